/**
 * The host as its networks' gateway, in iptables: forwarding for the
 * gateways this host serves and masquerading of their subnets, in chains of
 * the driver's own (FORWARD_CHAIN, NAT_CHAIN) that FORWARD and nat
 * POSTROUTING reach through one jump each. The chains are rebuilt whole from
 * the wanted state with one iptables-restore, so repeated or concurrent
 * calls never leave a second copy of a rule.
 *
 * Traffic from our networks to a Linux bridge of this host (Docker's
 * networks, libvirt's, ...) passes only to a published port, as traffic
 * from outside the host does: what the host's port DNAT'ed goes back to
 * FORWARD for Docker's rules to judge, the rest is dropped here (Docker
 * 20.10-27 leave the rest to FORWARD's policy, which is ACCEPT on a host
 * that forwarded before dockerd started). Nothing from elsewhere starts a
 * connection into our networks through the host.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { CommandError, type Runner } from './exec.js';
import type { Links } from './links.js';
import { assertIfName } from './names.js';

export const FORWARD_CHAIN = 'OVN-DOCKER-FORWARD';
export const NAT_CHAIN = 'OVN-DOCKER-POSTROUTING';
const COMMENT = 'ovn-docker-driver';
const IP_FORWARD = '/proc/sys/net/ipv4/ip_forward';
/** Docker's chain for users' rules: ours come right after it, so an operator's restrictions there apply to us too. */
const DOCKER_USER = 'DOCKER-USER';
/** Safety net behind the link monitor: jumps someone removed (a firewall reload) come back within this. */
const RECHECK_MS = 30_000;
/** Link changes come in bursts (a container start makes several). */
const MONITOR_DEBOUNCE_MS = 250;

/** Which iptables: the one dockerd uses (see detectBackend). */
export type Backend = 'default' | 'nft' | 'legacy';

export interface GatewayRule {
  /** The network's IPv4 subnet, e.g. "10.1.0.0/24". */
  subnet: string;
  /** The gateway port carrying the network's gateway address on this host. */
  ifName: string;
}

export interface FirewallOptions {
  /** Interface-name prefix of every gateway port. */
  prefix: string;
  /** Fixed backend instead of the one Docker's chains are found in. */
  backend?: Backend;
  /** The command that reports link changes, one line each (tests point it at a namespace). */
  monitor?: readonly string[];
}

/** A bridge name we can write into iptables-restore input as it is. */
const PLAIN_NAME = /^[A-Za-z0-9_.@-]+$/;
const CIDR = /^[0-9.]+\/[0-9]{1,2}$/;

export class HostFirewall {
  private wanted: GatewayRule[] = [];
  private backend: Backend | undefined;
  /** Whether `backend` is where Docker's chains were found (else only a guess until they appear). */
  private dockerFound = false;
  private found: Backend[] | undefined;
  private queued: Promise<void> | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private bridgesApplied = '';
  private monitor: ChildProcess | undefined;
  private recheck: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly runner: Runner,
    private readonly links: Links,
    private readonly options: FirewallOptions,
    private readonly log: Logger,
  ) {}

  async enableForwarding(): Promise<void> {
    // dockerd turns it on already; in a container /proc/sys is read-only, so write only when needed.
    if ((await readFile(IP_FORWARD, 'utf8')).trim() === '1') return;
    try {
      await writeFile(IP_FORWARD, '1\n');
    } catch (err) {
      throw new Error(
        `IP forwarding is off and cannot be turned on (${(err as Error).message}): ` +
          'run sysctl -w net.ipv4.ip_forward=1 on the host, or start the driver with --masquerade false',
        { cause: err },
      );
    }
  }

  /** Make the rules those of exactly these gateways. Resolves once rules read after this call are in force. */
  apply(gateways: readonly GatewayRule[]): Promise<void> {
    for (const g of gateways) {
      assertIfName(g.ifName);
      if (!g.ifName.startsWith(this.options.prefix)) throw new Error(`gateway port ${g.ifName} is not one of ours (${this.options.prefix}*)`);
      if (!CIDR.test(g.subnet)) throw new Error(`invalid IPv4 subnet ${JSON.stringify(g.subnet)}`);
    }
    this.wanted = [...gateways];
    if (gateways.length > 0) this.watch();
    return this.sync();
  }

  /**
   * One rebuild at a time; calls made while one waits to start share it, and
   * it reads the wanted state when it starts.
   */
  private sync(): Promise<void> {
    if (this.queued) return this.queued;
    const next = this.tail.then(
      () => this.rebuild(),
      () => this.rebuild(),
    );
    this.queued = next;
    this.tail = next.then(
      () => undefined,
      () => undefined,
    );
    return next;
  }

  private async rebuild(): Promise<void> {
    this.queued = undefined;
    const backend = await this.chooseBackend();
    const bridges = await this.links.bridges();
    const plain = bridges.filter((b) => PLAIN_NAME.test(b));
    if (plain.length !== bridges.length) {
      this.log.warn({ bridges: bridges.filter((b) => !PLAIN_NAME.test(b)) }, 'bridges with unusual names are not told apart from other interfaces');
    }
    await this.restore(backend, this.rules(plain));
    await this.ensureJump(backend, 'filter', 'FORWARD', FORWARD_CHAIN);
    await this.ensureJump(backend, 'nat', 'POSTROUTING', NAT_CHAIN);
    this.bridgesApplied = plain.join(' ');
  }

  private rules(bridges: string[]): string {
    const any = `${this.options.prefix}+`;
    const c = ['-m', 'comment', '--comment', COMMENT].join(' ');
    const forward = [
      // Between two of our networks, as Docker isolates its bridge networks.
      `-A ${FORWARD_CHAIN} -i ${any} -o ${any} ${c} -j DROP`,
      `-A ${FORWARD_CHAIN} -o ${any} -m conntrack --ctstate RELATED,ESTABLISHED ${c} -j ACCEPT`,
      ...bridges.flatMap((b) => [
        `-A ${FORWARD_CHAIN} -i ${any} -o ${b} -m conntrack --ctstate DNAT ${c} -j RETURN`,
        `-A ${FORWARD_CHAIN} -i ${any} -o ${b} ${c} -j DROP`,
      ]),
      ...this.wanted.map((g) => `-A ${FORWARD_CHAIN} -i ${g.ifName} ${c} -j ACCEPT`),
      // Nothing else starts a connection into our networks through the host (Docker's bridge networks
      // accept all they send out, and without Docker's rules FORWARD may accept everything).
      `-A ${FORWARD_CHAIN} -o ${any} ${c} -j DROP`,
    ];
    const nat = this.wanted.map((g) => `-A ${NAT_CHAIN} -s ${g.subnet} ! -o ${g.ifName} ${c} -j MASQUERADE`);
    // With --noflush, declaring a chain creates it or empties it, and leaves every other chain alone.
    return ['*filter', `:${FORWARD_CHAIN} - [0:0]`, ...forward, 'COMMIT', '*nat', `:${NAT_CHAIN} - [0:0]`, ...nat, 'COMMIT', ''].join('\n');
  }

  /**
   * The jump into our chain, once; from FORWARD right after DOCKER-USER's
   * jump (first without one), where a dockerd restart, which inserts its
   * rules at the top, cannot leave Docker's "accept all my bridge sends"
   * ahead of ours. Rules of older versions go.
   */
  private async ensureJump(backend: Backend, table: string, from: string, chain: string): Promise<void> {
    let rules = await this.listRules(backend, table, from);
    const stale = rules.filter((r) => r.includes(`--comment ${COMMENT}`) && !isJumpTo(r, chain));
    for (const rule of stale) {
      this.log.info({ table, rule }, 'removing a rule of an older version of the driver');
      await this.deleteRule(backend, table, rule);
    }
    if (stale.length > 0) rules = await this.listRules(backend, table, from);
    // 0-based among the rules; iptables numbers them from 1.
    const wanted = from === 'FORWARD' ? rules.findIndex((r) => isJumpTo(r, DOCKER_USER)) + 1 : undefined;
    const jumps = rules.flatMap((r, i) => (isJumpTo(r, chain) ? [i] : []));
    const inPlace = wanted === undefined ? jumps.length > 0 : jumps.includes(wanted);
    if (!inPlace) {
      await this.iptables(backend, ['-t', table, '-I', from, String((wanted ?? 0) + 1), '-m', 'comment', '--comment', COMMENT, '-j', chain]);
      if (jumps.length > 0) this.log.info({ table, from }, 'moved the jump into our chain back behind DOCKER-USER');
      rules = await this.listRules(backend, table, from);
    } else if (jumps.length === 1) {
      return;
    }
    // Every other copy goes, by number, from the last up (so the numbers above stay right).
    const keep = rules.findIndex((r, i) => isJumpTo(r, chain) && (wanted === undefined || i === wanted));
    const extra = rules.flatMap((r, i) => (isJumpTo(r, chain) && i !== keep ? [i] : [])).reverse();
    for (const i of extra) await this.iptables(backend, ['-t', table, '-D', from, String(i + 1)]);
  }

  /** Whether the jump from FORWARD is where ensureJump puts it. */
  private async forwardJumpInPlace(backend: Backend): Promise<boolean> {
    const rules = await this.listRules(backend, 'filter', 'FORWARD');
    const jumps = rules.filter((r) => isJumpTo(r, FORWARD_CHAIN)).length;
    return jumps === 1 && isJumpTo(rules[rules.findIndex((r) => isJumpTo(r, DOCKER_USER)) + 1] ?? '', FORWARD_CHAIN);
  }

  /** Remove every trace: jumps (all copies), rules of older versions and our chains, in every backend. */
  async removeAll(): Promise<void> {
    this.stopWatching();
    this.wanted = [];
    const removal = this.tail.then(async () => {
      for (const backend of this.options.backend ? [this.options.backend] : await this.backends()) {
      if (await this.hasTables(backend)) await this.removeFrom(backend);
    }
    });
    this.tail = removal.catch(() => undefined);
    await removal;
  }

  /** Stop watching links; rules stay in force. */
  close(): void {
    this.closed = true;
    this.stopWatching();
  }

  private stopWatching(): void {
    if (this.recheck) clearInterval(this.recheck);
    this.recheck = undefined;
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = undefined;
    this.monitor?.kill();
    this.monitor = undefined;
  }

  /**
   * Rebuild when a bridge comes or goes (a `docker network create` must not
   * leave its containers open to ours for a moment), and now and then in any
   * case, so that a jump removed by a firewall reload comes back.
   */
  private watch(): void {
    if (this.closed || this.recheck) return;
    this.recheck = setInterval(() => this.syncInBackground('recheck'), RECHECK_MS).unref();
    this.startMonitor();
  }

  private startMonitor(): void {
    if (this.closed) return;
    const [cmd, ...args] = this.options.monitor ?? ['ip', '-o', 'monitor', 'link'];
    const child = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    this.monitor = child;
    child.stdout!.on('data', () => {
      if (this.debounce) return;
      this.debounce = setTimeout(() => {
        this.debounce = undefined;
        this.checkInBackground();
      }, MONITOR_DEBOUNCE_MS);
    });
    child.on('error', (err) => this.log.warn({ err }, 'cannot watch links; bridges are picked up at the next periodic check'));
    child.on('exit', () => {
      if (this.monitor !== child || this.closed) return;
      this.monitor = undefined;
      setTimeout(() => this.startMonitor(), 1000).unref();
    });
  }

  /**
   * After links changed (a bridge made or removed; dockerd restarting and
   * re-inserting its rules also starts or moves links): rebuild if the
   * bridges changed or the jump is out of place. Two reads, no writes, when
   * nothing did: this runs at every container start.
   */
  private checkInBackground(): void {
    void (async () => {
      const bridges = (await this.links.bridges()).filter((b) => PLAIN_NAME.test(b)).join(' ');
      const backend = this.backend;
      if (bridges !== this.bridgesApplied) return this.syncInBackground('bridges changed');
      if (backend && !(await this.forwardJumpInPlace(backend))) return this.syncInBackground('jump out of place');
    })().catch((err: unknown) => this.log.warn({ err }, 'cannot check the firewall after links changed'));
  }

  private syncInBackground(why: string): void {
    if (this.closed) return;
    this.sync().catch((err: unknown) => this.log.error({ err, why }, 'cannot rebuild the firewall rules of the host gateways'));
  }

  /**
   * Docker writes its rules with the `iptables` on its PATH, nft or legacy:
   * ours must be in the same one, or each would see a packet the other has
   * not judged. Found by Docker's own chain; until Docker has one, the
   * `iptables` on our PATH.
   */
  private async chooseBackend(): Promise<Backend> {
    if (this.options.backend) return this.options.backend;
    if (this.backend && this.dockerFound) return this.backend;
    const candidates = await this.backends();
    for (const b of candidates) {
      if (!(await this.hasTables(b))) continue;
      if (await this.iptables(b, ['-t', 'filter', '-S', DOCKER_USER]).then(() => true, () => false)) {
        if (this.backend && this.backend !== b) await this.moveFrom(this.backend);
        this.backend = b;
        this.dockerFound = true;
        return b;
      }
    }
    this.backend ??= candidates[0]!;
    return this.backend;
  }

  /** Docker's chains appeared in another backend than ours: leave the old one clean. */
  private async moveFrom(old: Backend): Promise<void> {
    this.log.info({ from: old }, "moving the firewall rules to the iptables backend Docker's rules are in");
    await this.removeFrom(old);
  }

  private async removeFrom(backend: Backend): Promise<void> {
    for (const [table, from, chain] of [
      ['filter', 'FORWARD', FORWARD_CHAIN],
      ['nat', 'POSTROUTING', NAT_CHAIN],
    ] as const) {
      const rules = await this.listRules(backend, table, from).catch(() => []);
      for (const rule of rules.filter((r) => isJumpTo(r, chain) || r.includes(`--comment ${COMMENT}`))) {
        await this.deleteRule(backend, table, rule);
      }
      if (await this.iptables(backend, ['-t', table, '-S', chain]).then(() => true, () => false)) {
        await this.iptables(backend, ['-t', table, '-F', chain]);
        await this.iptables(backend, ['-t', table, '-X', chain]);
      }
    }
  }

  /**
   * The distinct iptables of this host, the one `iptables` runs first:
   * Debian's iptables-nft and iptables-legacy where installed, else `iptables` alone.
   */
  private async backends(): Promise<Backend[]> {
    if (this.found) return this.found;
    const version = (await this.iptables('default', ['-V']).catch(() => ({ stdout: '' }))).stdout;
    const first: Backend = /nf_tables/.test(version) ? 'nft' : /legacy/.test(version) ? 'legacy' : 'default';
    const installed: Backend[] = [];
    for (const b of ['nft', 'legacy'] as const) {
      if (await this.iptables(b, ['-V']).then(() => true, (err: unknown) => !isNotInstalled(err))) installed.push(b);
    }
    const found: Backend[] = installed.includes(first) ? [first, ...installed.filter((b) => b !== first)] : ['default'];
    this.found = found;
    return found;
  }

  /**
   * Whether a backend may hold rules in this namespace. Only asked of legacy,
   * where merely listing a chain creates its table (nft's listing creates nothing).
   */
  private async hasTables(backend: Backend): Promise<boolean> {
    if (backend !== 'legacy') return true;
    const { stdout } = await this.runner.run('cat', ['/proc/net/ip_tables_names']).catch(() => ({ stdout: '' }));
    return stdout.trim() !== '';
  }

  private async listRules(backend: Backend, table: string, chain: string): Promise<string[]> {
    const { stdout } = await this.iptables(backend, ['-t', table, '-S', chain]);
    return stdout.split('\n').filter((line) => line.startsWith('-A '));
  }

  /** Delete a rule as `-S` printed it (our rules have no quoted words). */
  private async deleteRule(backend: Backend, table: string, rule: string): Promise<void> {
    const words = rule.split(' ');
    await this.iptables(backend, ['-t', table, '-D', ...words.slice(1)]).catch((err: unknown) => {
      this.log.warn({ table, rule, err: (err as Error).message }, 'cannot delete a firewall rule');
    });
  }

  private async restore(backend: Backend, input: string): Promise<void> {
    const cmd = backend === 'default' ? 'iptables-restore' : `iptables-${backend}-restore`;
    await this.runner.run(cmd, ['-w', '--noflush'], { input });
  }

  private iptables(backend: Backend, args: string[]) {
    return this.runner.run(backend === 'default' ? 'iptables' : `iptables-${backend}`, ['-w', ...args]);
  }
}

function isJumpTo(rule: string, chain: string): boolean {
  return rule.endsWith(` -j ${chain}`) || rule.includes(` -j ${chain} `);
}

function isNotInstalled(err: unknown): boolean {
  return err instanceof CommandError && err.exitCode === null && !err.timedOut;
}
