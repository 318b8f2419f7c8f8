/**
 * OVN's container-in-VM ("nested") mode on one machine, without real VMs:
 * central NB, SB and ovn-northd in the root network namespace; a "hypervisor"
 * namespace with its own ovs-vswitchd, br-int and ovn-controller (the only
 * chassis); and a "VM" namespace joined to it by a veth, bound to one logical
 * port of a VM switch. The VM runs an ovs-vswitchd of its own with a bridge
 * breth0 (holding eth0 and the VM's address), as a driver inside a VM would
 * find it, and no ovn-controller: its containers become child ports
 * (parent_name + tag) of the VM's port, their traffic VLAN-tagged on eth0.
 *
 * Where the daemons sit, and why, is as in two-hosts.ts: ovsdb-servers in the
 * root namespace (unix sockets reach every namespace), each vswitchd (and the
 * controller) under `ip netns exec` with OVS_RUNDIR & co. in its own dir, so
 * that no two of them share br-*.mgmt sockets (machine-notes, "Several
 * ovs-vswitchd on one machine"). Both namespaces are created here under random
 * names and run nothing but their own vswitchd, so no datapath lock is needed.
 *
 * The netdev datapath leaves eth0 with the VM's kernel too (machine-notes,
 * 2026-12-01): the kernel sees every frame on it besides vswitchd, and frames
 * for the VM's own MAC (eth0's too) reached the VM's stack twice, on eth0 and
 * through breth0 (seen: every ping reply "DUP!"). VM.start() drops the eth0
 * copy, as a kernel datapath would by taking eth0 from the stack.
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
} from './process.js';

type Exec = (cmd: string, args: string[], opts?: { timeoutMs?: number }) => Promise<{ stdout: string; stderr: string }>;

export interface NestedHypervisor {
  /** ovnv-<hex>-hv: created here, deleted by this exact name. */
  netns: string;
  /** unix:… of its Open_vSwitch ovsdb-server (in the root namespace). */
  ovsRemote: string;
  /** The chassis name in SB (external_ids:system-id). */
  systemId: string;
  /** Its OVS_RUNDIR/OVN_RUNDIR/logs: vswitchd.log, controller.log, … */
  dir: string;
  /** On the namespace's lo; the Encap of the only chassis, so never used for a tunnel. */
  encapIp: string;
  /** The host end of the VM's veth, on br-int with iface-id = the VM's port. */
  vmIf: string;
  vsctl(...args: string[]): Promise<string>;
  /** Runs a command inside the hypervisor's namespace (argument array, no shell). */
  exec: Exec;
  readonly pids: { ovsdb: number; vswitchd: number; controller: number };
}

export interface NestedVm {
  /** ovnv-<hex>-vm: created here, deleted by this exact name. */
  netns: string;
  ovsRemote: string;
  dir: string;
  vsctl(...args: string[]): Promise<string>;
  exec: Exec;
  /** The VM's logical switch port (the parent of its containers' ports). */
  port: string;
  mac: string;
  ip: string;
  /** The VM switch in NB, 10.250.0.0/24. */
  switchName: string;
  /** Its OVS bridge: no fail-mode (normal L2 switching), the VM's MAC and address on its internal port. */
  bridge: 'breth0';
  /** The VM's NIC, a port of breth0; the trunk that carries the children's VLANs. */
  nic: 'eth0';
  readonly pids: { ovsdb: number; vswitchd: number };
}

export interface NestedLab {
  /** The lab's own dir: northd.log, northd.ctl; hv/ and vm/ below it. */
  dir: string;
  nb: OvsdbServer;
  sb: OvsdbServer;
  nbRemote: string;
  northdPid: number;
  nbctl(...args: string[]): Promise<string>;
  sbctl(...args: string[]): Promise<string>;
  hypervisor: NestedHypervisor;
  vm: NestedVm;
  /** Everything, by pid; namespaces by exact name (their links go with them); dirs removed. Idempotent. */
  stop(): Promise<void>;
}

export const VM_SUBNET = '10.250.0.0/24';
const VM_IP = '10.250.0.10';
const VM_MAC = '0a:58:0a:fa:00:0a';
const ENCAP_IP = '192.168.251.1';

function deleteNetnsSync(ns: string): void {
  try {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 5000 });
  } catch {
    // never created, or already gone
  }
}

/**
 * One namespace with its own Open_vSwitch database and ovs-vswitchd (netdev
 * datapath), and optionally an ovn-controller: the hypervisor and the VM alike.
 */
class OvsNode {
  protected ovsdbPid = 0;
  protected vswitchdPid = 0;
  protected controllerPid = 0;
  ovs?: OvsdbServer;

  constructor(
    readonly what: string,
    readonly netns: string,
    readonly dir: string,
  ) {}

  get ovsRemote(): string {
    if (!this.ovs) throw new Error(`${this.what}: its Open_vSwitch database is not running`);
    return this.ovs.unixRemote;
  }

  private get env(): NodeJS.ProcessEnv {
    return isolatedEnv(this.dir);
  }

  file(name: string): string {
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

  async startOvs(): Promise<void> {
    this.ovs = await startOvsdbServer({ schema: 'vswitch' });
    this.ovsdbPid = this.ovs.pid;
    await this.vsctl('--no-wait', 'init');
    this.vswitchdPid = await this.daemon(
      'ovs-vswitchd',
      [this.ovsRemote, `--unixctl=${this.file('vswitchd.ctl')}`, `--log-file=${this.file('vswitchd.log')}`, '--no-chdir', '-vconsole:off'],
      'vswitchd.pid',
    );
  }

  async startController(): Promise<void> {
    // 23.03 has no --unixctl: its control socket lands in OVN_RUNDIR (this.dir).
    this.controllerPid = await this.daemon(
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
    if (this.controllerPid) await attempt(() => stopPid(this.controllerPid));
    // A plain SIGTERM leaves the datapath's taps behind, but only in this
    // node's namespace, which goes next.
    if (this.vswitchdPid) await attempt(() => stopPid(this.vswitchdPid, { graceMs: 5000 }));
    if (this.ovs) {
      const ovs = this.ovs;
      await attempt(() => ovs.stop());
    }
    if (errors.length > 0) throw new AggregateError(errors, `${this.what} stop failed`);
  }
}

class HypervisorImpl extends OvsNode implements NestedHypervisor {
  readonly encapIp = ENCAP_IP;

  constructor(
    netns: string,
    dir: string,
    readonly systemId: string,
    readonly vmIf: string,
  ) {
    super('hypervisor', netns, dir);
  }

  get pids(): NestedHypervisor['pids'] {
    return { ovsdb: this.ovsdbPid, vswitchd: this.vswitchdPid, controller: this.controllerPid };
  }

  async start(sbRemote: string, vmPort: string): Promise<void> {
    await this.startOvs();
    // The encap IP is a real address of this namespace, though with one
    // chassis no tunnel is ever built to it.
    await run('ip', ['-n', this.netns, 'addr', 'add', `${this.encapIp}/32`, 'dev', 'lo']);
    // One transaction, and ovs-vsctl waits for vswitchd to apply it.
    await this.vsctl(
      'set', 'Open_vSwitch', '.',
      `external_ids:system-id=${this.systemId}`,
      `external_ids:ovn-remote=${sbRemote}`,
      'external_ids:ovn-encap-type=geneve',
      `external_ids:ovn-encap-ip=${this.encapIp}`,
      'external_ids:ovn-bridge-datapath-type=netdev',
      // ovn-controller would otherwise create br-int itself, with the kernel datapath.
      '--', 'add-br', 'br-int',
      '--', 'set', 'Bridge', 'br-int', 'datapath_type=netdev', 'fail-mode=secure',
      // The VM's NIC, as a hypervisor plugs a VM's tap.
      '--', 'add-port', 'br-int', this.vmIf,
      '--', 'set', 'Interface', this.vmIf, `external_ids:iface-id=${vmPort}`, `external_ids:attached-mac=${VM_MAC}`,
    );
    await run('ip', ['-n', this.netns, 'link', 'set', this.vmIf, 'up']);
    await this.startController();
  }
}

class VmImpl extends OvsNode implements NestedVm {
  readonly mac = VM_MAC;
  readonly ip = VM_IP;
  readonly bridge = 'breth0' as const;
  readonly nic = 'eth0' as const;

  constructor(
    netns: string,
    dir: string,
    readonly port: string,
    readonly switchName: string,
  ) {
    super('vm', netns, dir);
  }

  get pids(): NestedVm['pids'] {
    return { ovsdb: this.ovsdbPid, vswitchd: this.vswitchdPid };
  }

  async start(): Promise<void> {
    await this.startOvs();
    // No fail-mode: with no controller the bridge is a plain learning switch.
    // hwaddr pins breth0's MAC to the VM's, whatever ports join later.
    await this.vsctl(
      'add-br', this.bridge,
      '--', 'set', 'Bridge', this.bridge, 'datapath_type=netdev', `other-config:hwaddr=${this.mac}`,
      '--', 'add-port', this.bridge, this.nic,
    );
    // vswitchd's packet socket sees frames before netfilter does, so this
    // drops only the kernel's copy. IPv6 off on eth0 for the same reason: its
    // link-local address would be breth0's (same MAC).
    await this.exec('iptables', ['-w', '-t', 'raw', '-A', 'PREROUTING', '-i', this.nic, '-j', 'DROP']);
    await this.exec('sysctl', ['-q', '-w', `net.ipv6.conf.${this.nic}.disable_ipv6=1`]);
    await run('ip', ['-n', this.netns, 'link', 'set', this.nic, 'up']);
    await run('ip', ['-n', this.netns, 'addr', 'add', `${this.ip}/24`, 'dev', this.bridge]);
    await run('ip', ['-n', this.netns, 'link', 'set', this.bridge, 'up']);
  }
}

class NestedLabImpl implements NestedLab {
  northdPid = 0;
  private dbs: { nb?: OvsdbServer; sb?: OvsdbServer } = {};
  readonly hypervisor: HypervisorImpl;
  readonly vm: VmImpl;
  /** Namespaces that exist (so far), deleted by exact name. */
  private readonly namespaces: string[] = [];
  private readonly unregisterExit: () => void;
  private unregister: () => void = () => undefined;
  private stopping?: Promise<void>;

  constructor(
    readonly dir: string,
    hex: string,
  ) {
    this.hypervisor = new HypervisorImpl(`ovnv-${hex}-hv`, path.join(dir, 'hv'), `ovnv-${hex}-hv`, `vif-${hex}`);
    this.vm = new VmImpl(`ovnv-${hex}-vm`, path.join(dir, 'vm'), `vm-${hex}`, `vms-${hex}`);
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
    const vm = this.vm;
    const addr = `${vm.mac} ${vm.ip}`;
    await this.nbctl(
      'ls-add', vm.switchName,
      '--', 'set', 'Logical_Switch', vm.switchName, `other_config:subnet=${VM_SUBNET}`,
      '--', 'lsp-add', vm.switchName, vm.port,
      '--', 'lsp-set-addresses', vm.port, addr,
      '--', 'lsp-set-port-security', vm.port, addr,
    );
    const file = (name: string): string => path.join(this.dir, name);
    const northd = ovnBinaries().command('ovn-northd', [
      `--ovnnb-db=${this.nbRemote}`, `--ovnsb-db=${this.sb.unixRemote}`, `--unixctl=${file('northd.ctl')}`, `--log-file=${file('northd.log')}`, '--no-chdir', '-vconsole:off',
    ]);
    this.northdPid = await startDaemon(northd.cmd, northd.args, { pidfile: file('northd.pid'), env: this.env });
  }

  private async makeNamespaces(): Promise<void> {
    for (const node of [this.hypervisor, this.vm]) {
      await run('ip', ['netns', 'add', node.netns]);
      this.namespaces.push(node.netns);
      await run('ip', ['-n', node.netns, 'link', 'set', 'lo', 'up']);
      await mkdir(node.dir);
    }
    // Created straight into the two namespaces: no name ever appears in the root one.
    const { hypervisor: hv, vm } = this;
    await run('ip', ['link', 'add', vm.nic, 'netns', vm.netns, 'address', vm.mac, 'type', 'veth', 'peer', 'name', hv.vmIf, 'netns', hv.netns]);
  }

  async start(): Promise<void> {
    // allSettled: on a failure, stop() must not run while the other half still starts things.
    const prepared = await Promise.allSettled([this.startCentral(), this.makeNamespaces()]);
    for (const r of prepared) if (r.status === 'rejected') throw r.reason;
    const started = await Promise.allSettled([this.hypervisor.start(this.sb.unixRemote, this.vm.port), this.vm.start()]);
    for (const r of started) if (r.status === 'rejected') throw r.reason;
    // up=true: the controller claimed the port and installed its flows; with
    // --wait=hv after it, northd and the controller have caught up end to end.
    await this.nbctl('wait-until', 'Logical_Switch_Port', this.vm.port, 'up=true');
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
    await Promise.all([this.hypervisor, this.vm].map((n) => attempt(() => n.stop())));
    // Their processes are gone, so deleting the names frees the namespaces,
    // and with them the veth pair and the datapath taps.
    for (const ns of this.namespaces.splice(0)) await attempt(() => run('ip', ['netns', 'del', ns]).then(() => undefined));
    this.unregisterExit();
    if (this.northdPid) await attempt(() => stopPid(this.northdPid));
    for (const db of [this.dbs.sb, this.dbs.nb]) if (db) await attempt(() => db.stop());
    await attempt(() => removeDir(this.dir));
    if (errors.length > 0) throw new AggregateError(errors, 'nested lab stop failed');
  }
}

export async function startNestedLab(): Promise<NestedLab> {
  const dir = await makeTempDir('nested');
  trackDir(dir);
  const lab = new NestedLabImpl(dir, randomBytes(4).toString('hex'));
  try {
    await lab.start();
    lab.register();
    return lab;
  } catch (e) {
    await lab.stop().catch(() => undefined);
    throw e;
  }
}
