/**
 * Two OVN chassis ("hosts") on one machine, for multi-host tests: central NB,
 * SB and ovn-northd in the root network namespace, and per host a network
 * namespace holding that host's ovs-vswitchd (netdev datapath) and
 * ovn-controller. The hosts are joined by one veth pair, each end on the
 * host's netdev bridge br-phy, which also carries the host's tunnel IP; OVN
 * builds the geneve tunnels between them itself.
 *
 * Why each daemon sits where it does (machine-notes, "Two chassis on one
 * machine" and "Several ovs-vswitchd on one machine"):
 * - ovsdb-servers stay in the root namespace: their unix sockets are reachable
 *   from every network namespace, so nothing needs to be routed to reach them.
 * - ovs-vswitchd and ovn-controller run under `ip netns exec` (its /sys remount
 *   is what a netdev datapath wants: /sys/class/net of its own namespace), with
 *   OVS_RUNDIR & co. pointing at the host's own dir. Otherwise every vswitchd
 *   creates the same /var/run/openvswitch/br-int.mgmt and an ovn-controller
 *   programs another host's br-int.
 *
 * No datapath lock: ovn-stack.ts serialises vswitchds that would share one
 * network namespace (their netdev taps clash). Each host here is a namespace
 * this harness creates under a random name, in which nothing but its own
 * vswitchd ever runs; and no vswitchd of ours runs in the root namespace, so
 * these tests do not contend with single-chassis stacks either.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { ovnBinaries, type OvnTool } from './ovn-binaries.js';
import { ovnCli } from './ovn-cli.js';
import { startOvsdbServer, type OvsdbServer } from './ovsdb-server.js';
import {
  isolatedEnv,
  makeTempDir,
  onExitSync,
  registerCleanup,
  removeDir,
  run,
  startDaemon,
  stopPid,
  trackDir,
  waitFor,
} from './process.js';

export interface Host {
  name: 'a' | 'b';
  /** ovnh-<hex>-a: created here, deleted by this exact name. */
  netns: string;
  /** On br-phy, in 192.168.250.0/24 (private to the two namespaces). */
  tunnelIp: string;
  /** unix:… of this host's Open_vSwitch ovsdb-server (in the root namespace). */
  ovsRemote: string;
  systemId: string;
  /** The host's OVS_RUNDIR/OVN_RUNDIR/logs: vswitchd.log, controller.log, … */
  dir: string;
  vsctl(...args: string[]): Promise<string>;
  /** Runs a command inside this host's namespace (argument array, no shell). */
  exec(cmd: string, args: string[], opts?: { timeoutMs?: number }): Promise<{ stdout: string; stderr: string }>;
  readonly pids: { ovsdb: number; vswitchd: number; controller: number };
}

export interface TwoHosts {
  nb: OvsdbServer;
  sb: OvsdbServer;
  nbRemote: string;
  northdPid: number;
  hosts: [Host, Host];
  nbctl(...args: string[]): Promise<string>;
  sbctl(...args: string[]): Promise<string>;
  /** Everything, by pid; namespaces by exact name (their links go with them); dirs removed. */
  stop(): Promise<void>;
}

const TUNNEL_PREFIX = '192.168.250';
/** The veth joining the hosts: one end created straight into each namespace. */
const PHY_IF = { a: 'phy-a', b: 'phy-b' } as const;

function deleteNetnsSync(ns: string): void {
  try {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 5000 });
  } catch {
    // never created, or already gone
  }
}

class HostImpl implements Host {
  readonly tunnelIp: string;
  readonly systemId: string;
  readonly pids = { ovsdb: 0, vswitchd: 0, controller: 0 };
  ovs?: OvsdbServer;

  constructor(
    readonly name: 'a' | 'b',
    readonly netns: string,
    readonly dir: string,
    hex: string,
  ) {
    this.tunnelIp = `${TUNNEL_PREFIX}.${name === 'a' ? 1 : 2}`;
    this.systemId = `ovnh-${hex}-${name}`;
  }

  get ovsRemote(): string {
    if (!this.ovs) throw new Error(`host ${this.name}: its Open_vSwitch database is not running`);
    return this.ovs.unixRemote;
  }

  private get env(): NodeJS.ProcessEnv {
    return isolatedEnv(this.dir);
  }

  private file(name: string): string {
    return path.join(this.dir, name);
  }

  vsctl(...args: string[]): Promise<string> {
    return ovnCli('ovs-vsctl', this.ovsRemote, this.env, args);
  }

  exec(cmd: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<{ stdout: string; stderr: string }> {
    return run('ip', ['netns', 'exec', this.netns, cmd, ...args], { timeoutMs: opts.timeoutMs });
  }

  /** A daemon inside the namespace; `ip netns exec` execs it in place, so --detach/--pidfile behave as usual. */
  private daemon(tool: OvnTool, args: string[], pidName: string): Promise<number> {
    const { cmd, args: argv } = ovnBinaries().command(tool, args);
    return startDaemon('ip', ['netns', 'exec', this.netns, cmd, ...argv], { pidfile: this.file(pidName), env: this.env });
  }

  async start(sbRemote: string): Promise<void> {
    this.ovs = await startOvsdbServer({ schema: 'vswitch' });
    this.pids.ovsdb = this.ovs.pid;
    await this.vsctl('--no-wait', 'init');
    this.pids.vswitchd = await this.daemon(
      'ovs-vswitchd',
      [this.ovsRemote, `--unixctl=${this.file('vswitchd.ctl')}`, `--log-file=${this.file('vswitchd.log')}`, '--no-chdir', '-vconsole:off'],
      'vswitchd.pid',
    );
    // One transaction, and ovs-vsctl waits for vswitchd to apply it: br-phy's
    // internal port exists in the namespace when this returns.
    await this.vsctl(
      'set', 'Open_vSwitch', '.',
      `external_ids:system-id=${this.systemId}`,
      `external_ids:ovn-remote=${sbRemote}`,
      'external_ids:ovn-encap-type=geneve',
      `external_ids:ovn-encap-ip=${this.tunnelIp}`,
      'external_ids:ovn-bridge-datapath-type=netdev',
      // ovn-controller would otherwise create br-int itself, with the kernel datapath.
      '--', 'add-br', 'br-int',
      '--', 'set', 'Bridge', 'br-int', 'datapath_type=netdev', 'fail-mode=secure',
      '--', 'add-br', 'br-phy',
      '--', 'set', 'Bridge', 'br-phy', 'datapath_type=netdev',
      '--', 'add-port', 'br-phy', PHY_IF[this.name],
    );
    // vswitchd's userspace tunnels find the peer through the kernel routes of
    // its namespace (the connected route of br-phy) and ARP on br-phy.
    await run('ip', ['-n', this.netns, 'addr', 'add', `${this.tunnelIp}/24`, 'dev', 'br-phy']);
    await run('ip', ['-n', this.netns, 'link', 'set', 'br-phy', 'up']);
    // With the userspace datapath the kernel sees phy-x's frames too, as an interface of its own: it
    // would answer ARP for the tunnel address with phy-x's MAC as well as br-phy's, and the other
    // host's vswitchd, snooping ARP, would send the tunnel to whichever reply came last (phy-x's
    // MAC ends in this kernel, not in vswitchd's tunnel: cross-host traffic stops until the next ARP).
    const phy = PHY_IF[this.name];
    await this.exec('sysctl', ['-q', '-w', `net.ipv4.conf.${phy}.arp_ignore=8`, `net.ipv6.conf.${phy}.disable_ipv6=1`]);
    await run('ip', ['-n', this.netns, 'link', 'set', phy, 'up']);
    // 23.03 has no --unixctl: its control socket lands in OVN_RUNDIR (this.dir).
    this.pids.controller = await this.daemon(
      'ovn-controller',
      [this.ovsRemote, `--log-file=${this.file('controller.log')}`, '--no-chdir', '-vconsole:off'],
      'controller.pid',
    );
  }

  async stop(): Promise<void> {
    const errors: unknown[] = [];
    const attempt = async (fn: () => Promise<void>): Promise<void> => {
      await fn().catch((e: unknown) => errors.push(e));
    };
    if (this.pids.controller) await attempt(() => stopPid(this.pids.controller));
    // A plain SIGTERM leaves the datapath's taps (ovs-netdev, br-int, br-phy)
    // behind, but only in this host's namespace, which goes next.
    if (this.pids.vswitchd) await attempt(() => stopPid(this.pids.vswitchd, { graceMs: 5000 }));
    if (this.ovs) {
      const ovs = this.ovs;
      await attempt(() => ovs.stop());
    }
    if (errors.length > 0) throw new AggregateError(errors, `host ${this.name} stop failed`);
  }
}

class TwoHostsImpl implements TwoHosts {
  northdPid = 0;
  private dbs: { nb?: OvsdbServer; sb?: OvsdbServer } = {};
  readonly hosts: [HostImpl, HostImpl];
  /** Namespaces that exist (so far), deleted by exact name. */
  private readonly namespaces: string[] = [];
  private readonly unregisterExit: () => void;
  private unregister: () => void = () => undefined;
  private stopping?: Promise<void>;

  constructor(
    readonly dir: string,
    hex: string,
  ) {
    this.hosts = [
      new HostImpl('a', `ovnh-${hex}-a`, path.join(dir, 'a'), hex),
      new HostImpl('b', `ovnh-${hex}-b`, path.join(dir, 'b'), hex),
    ];
    // process.ts SIGKILLs every tracked pid before running this, so the
    // namespaces are empty (or about to be) when their names go.
    this.unregisterExit = onExitSync(() => {
      for (const ns of this.namespaces) deleteNetnsSync(ns);
    });
  }

  get nb(): OvsdbServer {
    return this.db('nb');
  }
  get sb(): OvsdbServer {
    return this.db('sb');
  }
  private db(name: 'nb' | 'sb'): OvsdbServer {
    const db = this.dbs[name];
    if (!db) throw new Error(`the central ${name} database is not running`);
    return db;
  }
  get nbRemote(): string {
    return this.nb.unixRemote;
  }

  private get env(): NodeJS.ProcessEnv {
    return isolatedEnv(this.dir);
  }

  nbctl(...args: string[]): Promise<string> {
    return ovnCli('ovn-nbctl', this.nbRemote, this.env, args);
  }
  sbctl(...args: string[]): Promise<string> {
    return ovnCli('ovn-sbctl', this.sb.unixRemote, this.env, args);
  }

  register(): void {
    this.unregister = registerCleanup(() => this.stop());
  }

  private async startCentral(): Promise<void> {
    // allSettled, so that stop() finds whichever did start when one fails.
    const [nb, sb] = await Promise.allSettled([startOvsdbServer({ schema: 'nb' }), startOvsdbServer({ schema: 'sb' })]);
    if (nb.status === 'fulfilled') this.dbs.nb = nb.value;
    if (sb.status === 'fulfilled') this.dbs.sb = sb.value;
    for (const r of [nb, sb]) if (r.status === 'rejected') throw r.reason;
    // NB_Global before northd, so that `nbctl --wait=…` works at once.
    await this.nbctl('init');
    const file = (name: string): string => path.join(this.dir, name);
    const northd = ovnBinaries().command('ovn-northd', [
      `--ovnnb-db=${this.nbRemote}`, `--ovnsb-db=${this.sb.unixRemote}`, `--unixctl=${file('northd.ctl')}`, `--log-file=${file('northd.log')}`, '--no-chdir', '-vconsole:off',
    ]);
    this.northdPid = await startDaemon(northd.cmd, northd.args, { pidfile: file('northd.pid'), env: this.env });
  }

  private async makeNamespaces(): Promise<void> {
    for (const h of this.hosts) {
      await run('ip', ['netns', 'add', h.netns]);
      this.namespaces.push(h.netns);
      await run('ip', ['-n', h.netns, 'link', 'set', 'lo', 'up']);
      await mkdir(h.dir);
    }
    const [a, b] = this.hosts;
    // Created straight into the two namespaces: no name ever appears in the root one.
    await run('ip', ['link', 'add', PHY_IF.a, 'netns', a.netns, 'type', 'veth', 'peer', 'name', PHY_IF.b, 'netns', b.netns]);
  }

  async start(): Promise<void> {
    // allSettled: on a failure, stop() must not run while the other half still starts things.
    const prepared = await Promise.allSettled([this.startCentral(), this.makeNamespaces()]);
    for (const r of prepared) if (r.status === 'rejected') throw r.reason;
    const sbRemote = this.sb.unixRemote;
    const started = await Promise.allSettled(this.hosts.map((h) => h.start(sbRemote)));
    for (const r of started) if (r.status === 'rejected') throw r.reason;
    // The underlay, and a warm tunnel: vswitchd resolves a tunnel's next hop
    // by snooping ARP on br-phy, and drops the packets that find no entry
    // (seen: the first overlay ping lost, 2 s). Pinging each other's tunnel
    // IP from the namespaces' kernels fills both tables.
    await Promise.all(
      this.hosts.map((h, i) => {
        const peer = this.hosts[1 - i]!;
        return waitFor(() => h.exec('ping', ['-c1', '-W1', peer.tunnelIp]).then(() => true), {
          what: `host ${h.name} to ping ${peer.tunnelIp} over the veth`,
          timeoutMs: 10_000,
          intervalMs: 100,
        });
      }),
    );
    await waitFor(
      async () => {
        const names = (await this.sbctl('--bare', '--columns=name', 'list', 'Chassis')).split(/\s+/).filter(Boolean);
        return this.hosts.every((h) => names.includes(h.systemId));
      },
      { what: `Chassis ${this.hosts.map((h) => h.systemId).join(' and ')} in the SB database`, timeoutMs: 30_000, intervalMs: 100 },
    );
    // Proves northd and both controllers process changes end to end.
    await this.nbctl('--wait=hv', 'sync');
  }

  stop(): Promise<void> {
    this.stopping ??= this.teardown();
    return this.stopping;
  }

  private async teardown(): Promise<void> {
    this.unregister();
    const errors: unknown[] = [];
    const attempt = async (fn: () => Promise<void>): Promise<void> => {
      await fn().catch((e: unknown) => errors.push(e));
    };
    await Promise.all(this.hosts.map((h) => attempt(() => h.stop())));
    // Its processes are gone, so deleting the name frees the namespace, and
    // with it the veth pair and the datapath taps.
    for (const ns of this.namespaces.splice(0)) await attempt(() => run('ip', ['netns', 'del', ns]).then(() => undefined));
    this.unregisterExit();
    if (this.northdPid) await attempt(() => stopPid(this.northdPid));
    for (const db of [this.dbs.sb, this.dbs.nb]) if (db) await attempt(() => db.stop());
    await attempt(() => removeDir(this.dir));
    if (errors.length > 0) throw new AggregateError(errors, 'two-hosts stop failed');
  }
}

export async function startTwoHosts(): Promise<TwoHosts> {
  const dir = await makeTempDir('twohosts');
  trackDir(dir);
  const harness = new TwoHostsImpl(dir, randomBytes(4).toString('hex'));
  try {
    await harness.start();
    harness.register();
    return harness;
  } catch (e) {
    await harness.stop().catch(() => undefined);
    throw e;
  }
}
