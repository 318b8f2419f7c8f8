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
 * connection into our networks through the host, except to a port the
 * driver publishes (publish()): DNAT in nat PREROUTING (from elsewhere) and
 * OUTPUT (the host itself, loopback included), accepted here, masqueraded
 * where the reply would otherwise not come back through the host.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import type { Logger } from 'pino';
import { CommandError, type Runner } from './exec.js';
import type { Links } from './links.js';
import { assertIfName, InvalidArgumentError } from './names.js';
import { isReadOnly, Sysctl } from './sysctl.js';

export const FORWARD_CHAIN = 'OVN-DOCKER-FORWARD';
export const NAT_CHAIN = 'OVN-DOCKER-POSTROUTING';
/** nat, from PREROUTING: DNAT of published ports for traffic from elsewhere. */
export const PREROUTING_CHAIN = 'OVN-DOCKER-PREROUTING';
/** nat, from OUTPUT: DNAT of published ports for the host's own traffic. */
export const OUTPUT_CHAIN = 'OVN-DOCKER-OUTPUT';
/** filter, from INPUT: nothing from our networks reaches the host's loopback addresses. */
export const INPUT_CHAIN = 'OVN-DOCKER-INPUT';
/** Matches of the jumps into the DNAT chains: only what is addressed to the host. */
const LOCAL_DST = ['-m', 'addrtype', '--dst-type', 'LOCAL'] as const;
const LOOPBACK_NET = '127.0.0.0/8';
const COMMENT = 'ovn-docker-driver';
/** Docker's chain for users' rules: ours come right after it, so an operator's restrictions there apply to us too. */
const DOCKER_USER = 'DOCKER-USER';
/** Safety net behind the link monitor: jumps someone removed (a firewall reload) come back within this. */
const RECHECK_MS = 30_000;
/** Link changes come in bursts (a container start makes several). */
const MONITOR_DEBOUNCE_MS = 250;

/** Which iptables: the one dockerd uses (see detectBackend). */
export type Backend = 'default' | 'nft' | 'legacy';

export interface GatewayRule {
  /** The network's subnet of the firewall's family, e.g. "10.1.0.0/24" or "fd00:1::/64". */
  subnet: string;
  /** The gateway port carrying the network's gateway address on this host. */
  ifName: string;
}

export type PublishedProtocol = 'tcp' | 'udp' | 'sctp';

/** One port the host publishes for a container behind one of its gateway ports. */
export interface PublishedRule {
  protocol: PublishedProtocol;
  /** '' = every IPv4 address of the host; else one IPv4 address (127.0.0.1 included). */
  hostIp: string;
  hostPort: number;
  /** IPv4, no prefix. */
  containerIp: string;
  containerPort: number;
  /** The network's gateway port (ovg…) the container is behind, and the network's IPv4 subnet. */
  ifName: string;
  subnet: string;
}

export interface FirewallOptions {
  /** Interface-name prefix of every gateway port. */
  prefix: string;
  /**
   * 6: ip6tables, for the gateways' IPv6 subnets: forwarding and masquerading
   * only (ports are published over IPv4: IPv6 host addresses are forwarded in
   * user space, src/publish/port-proxy.ts). 4 by default.
   */
  family?: 4 | 6;
  /** Fixed backend instead of the one Docker's chains are found in. */
  backend?: Backend;
  /** The command that reports link changes, one line each (tests point it at a namespace). */
  monitor?: readonly string[];
  /** Where route_localnet of the gateway ports is set (tests: another namespace's). */
  sysctl?: Sysctl;
}

/** A bridge name we can write into iptables-restore input as it is. */
const PLAIN_NAME = /^[A-Za-z0-9_.@-]+$/;
const CIDR = /^[0-9.]+\/[0-9]{1,2}$/;
const OCTET = '(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
const IPV4 = new RegExp(`^${OCTET}(?:\\.${OCTET}){3}$`);
const PROTOCOLS: readonly string[] = ['tcp', 'udp', 'sctp'];

export class HostFirewall {
  private wanted: GatewayRule[] = [];
  private published: PublishedRule[] = [];
  private readonly sysctl: Sysctl;
  /**
   * Gateway ports whose route_localnet may be 1 because of us; undefined
   * until this process has looked (a driver before it may have left some on).
   */
  private localnetOn: Set<string> | undefined;
  /** A port that should have route_localnet had no interface yet at the last rebuild. */
  private localnetPending = false;
  private warnedReadOnly = false;
  private backend: Backend | undefined;
  /** Whether `backend` is where Docker's chains were found (else only a guess until they appear). */
  private dockerFound = false;
  private found: Backend[] | undefined;
  /** The backend we wrote to before Docker's chains showed up in another: emptied once the new one is in force. */
  private leaving: Backend | undefined;
  private queued: Promise<void> | undefined;
  /**
   * Whether the next rebuild must look at everything (backend, bridges, the
   * jumps into our chains) rather than only restore our chains: a change of
   * gateways, links or time does; a change of published ports alone does not
   * (one process instead of eight per Program and Revoke, measured in
   * bench/publish-run).
   */
  private fullNeeded = true;
  private tail: Promise<unknown> = Promise.resolve();
  private bridgesApplied = '';
  /**
   * The bridges the latest rebuild read, as soon as it read them: a link
   * change seen while that rebuild still writes its rules compares with
   * this, not with the rules in force (which still show the bridges before),
   * or a bridge removed meanwhile would keep its rules until the next
   * periodic check. Undefined after a failed rebuild: the next change rebuilds.
   */
  private bridgesRead: string | undefined = '';
  private monitor: ChildProcess | undefined;
  private recheck: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly runner: Runner,
    private readonly links: Links,
    private readonly options: FirewallOptions,
    private readonly log: Logger,
  ) {
    this.sysctl = options.sysctl ?? new Sysctl();
  }

  /**
   * IPv6: whether the host forwards. Never turned on here: on a host that takes
   * its IPv6 route from router advertisements, turning it on drops that route
   * (accept_ra=1 stops working): the operator decides.
   */
  async forwarding(): Promise<boolean> {
    return this.sysctl.forwarding(this.v6 ? 'ipv6' : 'ipv4');
  }

  async enableForwarding(): Promise<void> {
    if (this.v6) throw new Error('IPv6 forwarding is the operator\'s to turn on (see forwarding())');
    // dockerd turns it on already; in a container /proc/sys is read-only, so it is written only when needed.
    try {
      await this.sysctl.enableIPv4Forwarding();
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
      if (!(this.v6 ? isIpv6Subnet(g.subnet) : CIDR.test(g.subnet))) throw new Error(`invalid IPv${this.v6 ? 6 : 4} subnet ${JSON.stringify(g.subnet)}`);
    }
    this.wanted = [...gateways];
    this.fullNeeded = true;
    if (gateways.length > 0) this.watch();
    return this.sync();
  }

  /**
   * Make the published ports exactly these (replacing the previous set).
   * Resolves once rules read after this call are in force. Every rule is
   * checked before anything changes: one bad rule and this throws, leaving
   * the set in force as it was.
   */
  publish(rules: readonly PublishedRule[], options: { defer?: boolean } = {}): Promise<void> {
    if (this.v6 && rules.length > 0) throw new Error('ports are published by the IPv4 firewall');
    const checked = rules.map((r) => this.checkPublished(r));
    // One DNAT per host address, port and protocol: a second target for it could never be reached.
    const byHostPort = new Map<string, PublishedRule>();
    const unique: PublishedRule[] = [];
    for (const r of checked) {
      const key = `${r.protocol} ${r.hostIp} ${r.hostPort}`;
      const other = byHostPort.get(key);
      if (!other) {
        byHostPort.set(key, r);
        unique.push(r);
      } else if (other.containerIp !== r.containerIp || other.containerPort !== r.containerPort || other.ifName !== r.ifName || other.subnet !== r.subnet) {
        throw new InvalidArgumentError(
          'published port',
          `${r.hostIp || '0.0.0.0'}:${r.hostPort}/${r.protocol}`,
          `published twice, to ${other.containerIp}:${other.containerPort} and ${r.containerIp}:${r.containerPort}`,
        );
      }
    }
    this.published = unique;
    if (unique.length > 0) this.watch();
    // At start-up the gateways' rebuild, which comes next, writes these too: no moment without either.
    if (options.defer) return Promise.resolve();
    return this.sync();
  }

  /** A copy of the rule with exactly the fields we know, or an InvalidArgumentError. */
  private checkPublished(r: PublishedRule): PublishedRule {
    const what = 'published port';
    const text = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v) ?? String(v));
    if (typeof r !== 'object' || r === null) throw new InvalidArgumentError(what, text(r), 'not an object');
    if (!PROTOCOLS.includes(r.protocol)) throw new InvalidArgumentError(`${what} protocol`, text(r.protocol), 'not tcp, udp or sctp');
    if (typeof r.hostIp !== 'string' || (r.hostIp !== '' && !IPV4.test(r.hostIp))) {
      throw new InvalidArgumentError(`${what} host address`, text(r.hostIp), "neither '' (every address) nor an IPv4 address");
    }
    if (r.hostIp === '0.0.0.0') throw new InvalidArgumentError(`${what} host address`, r.hostIp, "for every address of the host, give ''");
    for (const [field, port] of [['host port', r.hostPort], ['container port', r.containerPort]] as const) {
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgumentError(`${what} ${field}`, text(port), 'not a port number (1-65535)');
    }
    if (typeof r.ifName !== 'string') throw new InvalidArgumentError(`${what} gateway port`, text(r.ifName), 'not a name');
    assertIfName(r.ifName, `${what} gateway port`);
    if (!r.ifName.startsWith(this.options.prefix) || !PLAIN_NAME.test(r.ifName)) {
      throw new InvalidArgumentError(`${what} gateway port`, r.ifName, `not one of ours (${this.options.prefix}*)`);
    }
    const subnet = typeof r.subnet === 'string' ? parseSubnet(r.subnet) : undefined;
    if (!subnet) throw new InvalidArgumentError(`${what} subnet`, text(r.subnet), 'not an IPv4 subnet (network address/prefix length)');
    if (typeof r.containerIp !== 'string' || !IPV4.test(r.containerIp)) {
      throw new InvalidArgumentError(`${what} container address`, text(r.containerIp), 'not an IPv4 address (without a prefix length)');
    }
    if (!inSubnet(ipv4ToNumber(r.containerIp), subnet)) throw new InvalidArgumentError(`${what} container address`, r.containerIp, `not in its network's subnet ${r.subnet}`);
    return {
      protocol: r.protocol,
      hostIp: r.hostIp,
      hostPort: r.hostPort,
      containerIp: r.containerIp,
      containerPort: r.containerPort,
      ifName: r.ifName,
      subnet: r.subnet,
    };
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
    // A change while this runs sets it again and queues the next rebuild.
    const full = this.fullNeeded || !this.backendSettled();
    this.fullNeeded = false;
    try {
      if (full) await this.rebuildAll();
      else await this.restorePublished();
    } catch (err) {
      this.fullNeeded = true;
      this.bridgesRead = undefined;
      throw err;
    }
  }

  /** Whether the backend chosen is the one it stays (Docker's chains were found in it, or it was given). */
  private backendSettled(): boolean {
    return (this.options.backend !== undefined || (this.backend !== undefined && this.dockerFound)) && this.leaving === undefined;
  }

  private async rebuildAll(): Promise<void> {
    const backend = await this.chooseBackend();
    const bridges = await this.links.bridges();
    const plain = bridges.filter((b) => PLAIN_NAME.test(b));
    this.bridgesRead = plain.join(' ');
    if (plain.length !== bridges.length) {
      this.log.warn({ bridges: bridges.filter((b) => !PLAIN_NAME.test(b)) }, 'bridges with unusual names are not told apart from other interfaces');
    }
    // One snapshot of the wanted state for the rules and route_localnet alike.
    const published = this.published;
    await this.restore(backend, this.rules(plain, this.wanted, published));
    for (const [table, from, chain, match] of this.jumps()) await this.ensureJump(backend, table, from, chain, match);
    this.bridgesApplied = plain.join(' ');
    // Only now that the new backend's rules (INPUT's guard among them) are in force.
    if (this.leaving) {
      await this.moveFrom(this.leaving);
      this.leaving = undefined;
    }
    await this.syncRouteLocalnet(localnetPorts(published), { always: true });
  }

  /**
   * Only the published ports changed since a full rebuild: the same chains
   * restored from the same state, with the bridges that rebuild saw (the link
   * monitor brings a full one when they change) and the jumps left as they
   * are (the periodic check puts them back if someone removed them).
   */
  private async restorePublished(): Promise<void> {
    const published = this.published;
    const bridges = this.bridgesApplied === '' ? [] : this.bridgesApplied.split(' ');
    await this.restore(this.options.backend ?? this.backend!, this.rules(bridges, this.wanted, published));
    await this.syncRouteLocalnet(localnetPorts(published), { always: false });
  }

  /** Our chains, each with where it is jumped to from and the jump's matches. */
  private jumps(): [table: 'filter' | 'nat', from: string, chain: string, match: readonly string[]][] {
    const both: [table: 'filter' | 'nat', from: string, chain: string, match: readonly string[]][] = [
      ['filter', 'FORWARD', FORWARD_CHAIN, []],
      ['nat', 'POSTROUTING', NAT_CHAIN, []],
    ];
    if (this.v6) return both;
    return [...both, ['filter', 'INPUT', INPUT_CHAIN, []], ['nat', 'PREROUTING', PREROUTING_CHAIN, LOCAL_DST], ['nat', 'OUTPUT', OUTPUT_CHAIN, LOCAL_DST]];
  }

  private rules(bridges: string[], gateways: readonly GatewayRule[], published: readonly PublishedRule[]): string {
    const any = `${this.options.prefix}+`;
    const c = ['-m', 'comment', '--comment', COMMENT].join(' ');
    const proto = (p: PublishedRule) => `-p ${p.protocol} -m ${p.protocol}`;
    const forward = [
      // Published ports, from anywhere (our networks included, a container's own through the host's
      // address too): the packets DNAT'ed to them, and their replies, which between two of our
      // networks (or within one, through the host) the next rule would drop.
      ...published.flatMap((p) => [
        `-A ${FORWARD_CHAIN} -d ${p.containerIp}/32 -o ${p.ifName} ${proto(p)} --dport ${p.containerPort} -m conntrack --ctstate DNAT ${c} -j ACCEPT`,
        `-A ${FORWARD_CHAIN} -s ${p.containerIp}/32 -i ${p.ifName} ${proto(p)} --sport ${p.containerPort} -m conntrack --ctstate DNAT --ctdir REPLY ${c} -j ACCEPT`,
      ]),
      // Between two of our networks, as Docker isolates its bridge networks.
      `-A ${FORWARD_CHAIN} -i ${any} -o ${any} ${c} -j DROP`,
      `-A ${FORWARD_CHAIN} -o ${any} -m conntrack --ctstate RELATED,ESTABLISHED ${c} -j ACCEPT`,
      ...bridges.flatMap((b) => [
        `-A ${FORWARD_CHAIN} -i ${any} -o ${b} -m conntrack --ctstate DNAT ${c} -j RETURN`,
        `-A ${FORWARD_CHAIN} -i ${any} -o ${b} ${c} -j DROP`,
      ]),
      ...gateways.map((g) => `-A ${FORWARD_CHAIN} -i ${g.ifName} ${c} -j ACCEPT`),
      // Nothing else starts a connection into our networks through the host (Docker's bridge networks
      // accept all they send out, and without Docker's rules FORWARD may accept everything).
      `-A ${FORWARD_CHAIN} -o ${any} ${c} -j DROP`,
    ];
    // Always, not only while some port has route_localnet on: it costs nothing while none has (the
    // kernel drops such packets as martians then), and it never lags behind a route_localnet left on
    // (by a driver that crashed between its writes, or by hand). Replies to the host's own connections
    // to a port published on loopback arrive here with a 127.0.0.1 destination: those are ESTABLISHED.
    const input = [`-A ${INPUT_CHAIN} -d ${LOOPBACK_NET} -i ${any} -m conntrack ! --ctstate RELATED,ESTABLISHED ${c} -j DROP`];
    // A host address given before every address: the more specific binding wins, as with sockets.
    const dnatOrder = [...published.filter((p) => p.hostIp !== ''), ...published.filter((p) => p.hostIp === '')];
    const dnat = (chain: string) =>
      dnatOrder.map((p) => `-A ${chain} ${p.hostIp ? `-d ${p.hostIp}/32 ` : ''}${proto(p)} --dport ${p.hostPort} ${c} -j DNAT --to-destination ${p.containerIp}:${p.containerPort}`);
    const prerouting = dnatOrder.length === 0 ? [] : [
      // A loopback destination from another host (on the LAN, or a container sending to 127.0.0.1
      // through its gateway) is no way in: ports published on 127.0.0.1 stay the host's own, and the
      // host's own connections are DNAT'ed in OUTPUT, never here.
      `-A ${PREROUTING_CHAIN} -d ${LOOPBACK_NET} ! -i lo ${c} -j RETURN`,
      ...dnat(PREROUTING_CHAIN),
    ];
    const nat = [
      ...gateways.map((g) => `-A ${NAT_CHAIN} -s ${g.subnet} ! -o ${g.ifName} ${c} -j MASQUERADE`),
      // Hairpin: a container reaching a published port of its own network through a host address
      // would get the reply straight from the other container, which it never sent anything to.
      ...published.map((p) => `-A ${NAT_CHAIN} -s ${p.subnet} -d ${p.containerIp}/32 -o ${p.ifName} ${proto(p)} --dport ${p.containerPort} ${c} -j MASQUERADE`),
      // The host's own connections to a port published on loopback: a container cannot answer 127.0.0.1.
      ...[...localnetPorts(published)].map((ifName) => `-A ${NAT_CHAIN} -s ${LOOPBACK_NET} -o ${ifName} ${c} -j MASQUERADE`),
    ];
    // With --noflush, declaring a chain creates it or empties it, and leaves every other chain alone.
    // IPv6 has no published port, and nothing routes to ::1: only the gateways' chains.
    if (this.v6) return ['*filter', `:${FORWARD_CHAIN} - [0:0]`, ...unique(forward), 'COMMIT', '*nat', `:${NAT_CHAIN} - [0:0]`, ...unique(nat), 'COMMIT', ''].join('\n');
    return [
      '*filter',
      `:${FORWARD_CHAIN} - [0:0]`,
      `:${INPUT_CHAIN} - [0:0]`,
      ...unique(forward),
      ...input,
      'COMMIT',
      '*nat',
      `:${NAT_CHAIN} - [0:0]`,
      `:${PREROUTING_CHAIN} - [0:0]`,
      `:${OUTPUT_CHAIN} - [0:0]`,
      ...unique(nat),
      ...prerouting,
      ...dnat(OUTPUT_CHAIN),
      'COMMIT',
      '',
    ].join('\n');
  }

  /**
   * route_localnet=1 on exactly the gateway ports with a port published on
   * loopback (or on every address): the host's packets to 127.0.0.1:PORT,
   * DNAT'ed, leave through the port with their 127.0.0.1 source (masqueraded
   * only after routing), and the replies come back to 127.0.0.1; the kernel
   * drops both as martians otherwise. Off again on every other port of ours.
   * Unless `always`, nothing is read or written when the ports are those set last time.
   */
  private async syncRouteLocalnet(wanted: ReadonlySet<string>, options: { always: boolean }): Promise<void> {
    if (this.v6) return;
    const settled = !this.localnetPending && this.localnetOn !== undefined;
    if (settled && wanted.size === 0 && this.localnetOn!.size === 0) return;
    if (settled && !options.always && sameSet(wanted, this.localnetOn!)) return;
    const present = new Set((await this.links.list()).map((l) => l.name).filter((n) => n.startsWith(this.options.prefix)));
    const on = new Set(this.localnetOn ?? present);
    let pending = false;
    try {
      for (const ifName of wanted) {
        if (!present.has(ifName)) {
          // Its gateway port is not up yet: the link monitor brings us back when it is.
          pending = true;
          continue;
        }
        on.add(ifName);
        await this.setRouteLocalnet(ifName, 1);
      }
      for (const ifName of [...on]) {
        if (wanted.has(ifName)) continue;
        if (present.has(ifName)) await this.setRouteLocalnet(ifName, 0);
        on.delete(ifName);
      }
    } finally {
      this.localnetOn = on;
      this.localnetPending = pending;
    }
  }

  private async setRouteLocalnet(ifName: string, value: 0 | 1): Promise<void> {
    try {
      await this.sysctl.setInterface(ifName, { family: 'ipv4', key: 'route_localnet', value });
    } catch (err) {
      // Gone meanwhile: so is its setting.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || !(await this.links.exists(ifName).catch(() => true))) return;
      if (!isReadOnly(err)) throw err;
      if (value === 1 && !this.warnedReadOnly) {
        this.warnedReadOnly = true;
        this.log.warn(
          { interface: ifName, err: (err as Error).message },
          `cannot set net.ipv4.conf.${ifName}.route_localnet=1 (/proc/sys is read-only): the host itself cannot reach ports published on loopback or on every address through 127.0.0.1`,
        );
      }
    }
  }

  /**
   * The jump into our chain, once; from FORWARD right after DOCKER-USER's
   * jump (first without one), where a dockerd restart, which inserts its
   * rules at the top, cannot leave Docker's "accept all my bridge sends"
   * ahead of ours; first elsewhere. With `match`, only a jump with it is
   * ours (one without would DNAT what is not the host's). Rules of older versions go.
   */
  private async ensureJump(backend: Backend, table: string, from: string, chain: string, match: readonly string[] = []): Promise<void> {
    const matchText = match.join(' ');
    const ours = (r: string) => isJumpTo(r, chain) && r.includes(matchText);
    let rules = await this.listRules(backend, table, from);
    const stale = rules.filter((r) => (r.includes(`--comment ${COMMENT}`) && !isJumpTo(r, chain)) || (isJumpTo(r, chain) && !ours(r)));
    for (const rule of stale) {
      this.log.info({ table, rule }, 'removing a rule of an older version of the driver');
      await this.deleteRule(backend, table, rule);
    }
    if (stale.length > 0) rules = await this.listRules(backend, table, from);
    // 0-based among the rules; iptables numbers them from 1.
    const wanted = from === 'FORWARD' ? rules.findIndex((r) => isJumpTo(r, DOCKER_USER)) + 1 : undefined;
    const jumps = rules.flatMap((r, i) => (ours(r) ? [i] : []));
    const inPlace = wanted === undefined ? jumps.length > 0 : jumps.includes(wanted);
    if (!inPlace) {
      await this.iptables(backend, ['-t', table, '-I', from, String((wanted ?? 0) + 1), ...match, '-m', 'comment', '--comment', COMMENT, '-j', chain]);
      if (jumps.length > 0) this.log.info({ table, from }, 'moved the jump into our chain back behind DOCKER-USER');
      rules = await this.listRules(backend, table, from);
    } else if (jumps.length === 1) {
      return;
    }
    // Every other copy goes, by number, from the last up (so the numbers above stay right).
    const keep = rules.findIndex((r, i) => ours(r) && (wanted === undefined || i === wanted));
    const extra = rules.flatMap((r, i) => (isJumpTo(r, chain) && i !== keep ? [i] : [])).reverse();
    for (const i of extra) await this.iptables(backend, ['-t', table, '-D', from, String(i + 1)]);
  }

  /** Whether the jump from FORWARD is where ensureJump puts it. */
  private async forwardJumpInPlace(backend: Backend): Promise<boolean> {
    const rules = await this.listRules(backend, 'filter', 'FORWARD');
    const jumps = rules.filter((r) => isJumpTo(r, FORWARD_CHAIN)).length;
    return jumps === 1 && isJumpTo(rules[rules.findIndex((r) => isJumpTo(r, DOCKER_USER)) + 1] ?? '', FORWARD_CHAIN);
  }

  /**
   * Remove every trace: jumps (all copies), rules of older versions and our
   * chains, in every backend, and route_localnet on our ports. Nothing is
   * published or forwarded afterwards until publish() or apply() is called again.
   */
  async removeAll(): Promise<void> {
    this.stopWatching();
    this.wanted = [];
    this.published = [];
    // The chains go: whatever comes next must put the jumps back.
    this.fullNeeded = true;
    const removal = this.tail.then(async () => {
      // Every port of ours, not only those this process knows of; before INPUT's guard goes.
      this.localnetOn = undefined;
      // Every backend is emptied below.
      this.leaving = undefined;
      await this.syncRouteLocalnet(new Set(), { always: true }).catch((err: unknown) =>
        this.log.warn({ err }, 'cannot turn route_localnet off on the gateway ports (they go with their networks)'),
      );
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
      if (bridges !== this.bridgesRead) return this.syncInBackground('bridges changed');
      if (this.localnetPending) return this.syncInBackground('a gateway port with a port published on loopback may be up');
      if (backend && !(await this.forwardJumpInPlace(backend))) return this.syncInBackground('jump out of place');
    })().catch((err: unknown) => this.log.warn({ err }, 'cannot check the firewall after links changed'));
  }

  private syncInBackground(why: string): void {
    if (this.closed) return;
    this.fullNeeded = true;
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
        if (this.backend && this.backend !== b) this.leaving = this.backend;
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
    for (const [table, from, chain] of this.jumps()) {
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
    const { stdout } = await this.runner.run('cat', [this.v6 ? '/proc/net/ip6_tables_names' : '/proc/net/ip_tables_names']).catch(() => ({ stdout: '' }));
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
    const cmd = backend === 'default' ? `${this.command}-restore` : `${this.command}-${backend}-restore`;
    await this.runner.run(cmd, ['-w', '--noflush'], { input });
  }

  private iptables(backend: Backend, args: string[]) {
    return this.runner.run(backend === 'default' ? this.command : `${this.command}-${backend}`, ['-w', ...args]);
  }

  private get v6(): boolean {
    return this.options.family === 6;
  }

  private get command(): string {
    return this.v6 ? 'ip6tables' : 'iptables';
  }
}

/** "prefix/len" with an IPv6 prefix, in the compressed form ip6tables prints. */
function isIpv6Subnet(cidr: string): boolean {
  const [ip, len, ...rest] = cidr.split('/');
  if (rest.length > 0 || !ip || !net.isIPv6(ip) || !/^(?:[0-9]|[1-9][0-9]|1[01][0-9]|12[0-8])$/.test(len ?? '')) return false;
  return new URL(`http://[${ip}]/`).hostname === `[${ip}]`;
}

/** Gateway ports the host's own loopback traffic leaves through: those with a port published on loopback or every address. */
function localnetPorts(published: readonly PublishedRule[]): Set<string> {
  return new Set(published.filter((p) => p.hostIp === '' || p.hostIp.startsWith('127.')).map((p) => p.ifName));
}

function sameSet<T>(a: ReadonlySet<T>, b: ReadonlySet<T>): boolean {
  return a.size === b.size && [...a].every((x) => b.has(x));
}

function unique(lines: string[]): string[] {
  return [...new Set(lines)];
}

function ipv4ToNumber(ip: string): number {
  return ip.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
}

/** "a.b.c.d/len" with no host bits set (iptables would print it otherwise than we wrote it). */
function parseSubnet(cidr: string): { base: number; bits: number } | undefined {
  const [ip, len, ...rest] = cidr.split('/');
  if (rest.length > 0 || ip === undefined || len === undefined || !IPV4.test(ip) || !/^(?:[0-9]|[12][0-9]|3[0-2])$/.test(len)) return undefined;
  const bits = Number(len);
  const base = ipv4ToNumber(ip);
  return base % 2 ** (32 - bits) === 0 ? { base, bits } : undefined;
}

function inSubnet(ip: number, subnet: { base: number; bits: number }): boolean {
  return ip - (ip % 2 ** (32 - subnet.bits)) === subnet.base;
}

function isJumpTo(rule: string, chain: string): boolean {
  return rule.endsWith(` -j ${chain}`) || rule.includes(` -j ${chain} `);
}

function isNotInstalled(err: unknown): boolean {
  return err instanceof CommandError && err.exitCode === null && !err.timedOut;
}
