/**
 * A single-chassis OVN: private NB, SB and Open_vSwitch databases, ovn-northd,
 * an ovs-vswitchd with a userspace (netdev) br-int and an ovn-controller, all
 * in one throw-away directory, for tests that need real packets to flow.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, readlink } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { ovnBinaries } from './ovn-binaries.js';
import { ovnCli } from './ovn-cli.js';
import { startOvsdbServer, type OvsdbServer } from './ovsdb-server.js';
import type { Pki } from './pki.js';
import {
  isAlive,
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

export interface OvnStack {
  dir: string;
  nb: OvsdbServer;
  sb: OvsdbServer;
  ovs: OvsdbServer;
  nbRemote: string;
  ovsRemote: string;
  systemId: string;
  /** The stack's own daemons (the ovsdb-servers carry their pid themselves). */
  pids: { northd: number; vswitchd: number; controller: number };
  vsctl(...args: string[]): Promise<string>;
  nbctl(...args: string[]): Promise<string>;
  sbctl(...args: string[]): Promise<string>;
  stop(): Promise<void>;
}

/**
 * A netdev datapath creates the tap devices "ovs-netdev" and "br-int" in the
 * network namespace it runs in, so a second vswitchd in the same namespace
 * fails to open its datapath. Test files run in parallel: they queue on this
 * lock. An abstract unix socket is per network namespace and vanishes with its
 * process, so a crashed test never leaves a stale lock behind.
 */
const DATAPATH_LOCK = '\0ovn-test-netdev-datapath';

async function acquireDatapathLock(timeoutMs: number): Promise<net.Server> {
  return waitFor(
    () =>
      new Promise<net.Server | undefined>((resolve) => {
        const srv = net.createServer();
        srv.once('error', () => resolve(undefined));
        srv.listen(DATAPATH_LOCK, () => {
          srv.unref();
          resolve(srv);
        });
      }),
    { what: 'the netdev datapath lock (another test runs an OVN stack)', timeoutMs, intervalMs: 100 },
  );
}

/** Any vswitchd here, ours or a system one: a second netdev datapath would clash with it. */
async function vswitchdInThisNetns(): Promise<number | undefined> {
  const myNet = await readlink('/proc/self/ns/net');
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const comm = (await readFile(`/proc/${entry}/comm`, 'utf8')).trim();
      if (comm === 'ovs-vswitchd' && (await readlink(`/proc/${entry}/ns/net`)) === myNet && isAlive(Number(entry))) {
        return Number(entry);
      }
    } catch {
      // exited while we looked
    }
  }
  return undefined;
}

/**
 * Even `exit --cleanup` leaves the datapath's own persistent tap behind. Only
 * removed while no vswitchd runs in this namespace; under the lock, that
 * means ours is gone and the taps are the ones it made.
 */
const DATAPATH_TAPS = ['ovs-netdev', 'br-int'];

async function removeDatapathTaps(): Promise<void> {
  if ((await vswitchdInThisNetns()) !== undefined) return;
  for (const tap of DATAPATH_TAPS) {
    const exists = await run('ip', ['link', 'show', 'dev', tap]).then(() => true, () => false);
    if (exists) await run('ip', ['link', 'del', 'dev', tap]);
  }
}

/** For a test process that dies with the stack up: its vswitchd was just SIGKILLed. */
function removeDatapathTapsSync(): void {
  for (const tap of DATAPATH_TAPS) {
    try {
      execFileSync('ip', ['link', 'del', 'dev', tap], { stdio: 'ignore', timeout: 5000 });
    } catch {
      // not there
    }
  }
}

class Stack implements OvnStack {
  readonly pids = { northd: 0, vswitchd: 0, controller: 0 };
  readonly systemId = `ovn-test-${randomBytes(4).toString('hex')}`;
  private dbs: { nb?: OvsdbServer; sb?: OvsdbServer; ovs?: OvsdbServer } = {};
  private unregister: () => void = () => undefined;
  private readonly unregisterExit = onExitSync(removeDatapathTapsSync);

  constructor(
    readonly dir: string,
    private readonly lock: net.Server,
    /** NB also listens on ssl: with this PKI's server certificate (nb.sslRemote). */
    private readonly nbSsl?: Pki,
  ) {}

  get nb(): OvsdbServer {
    return this.db('nb');
  }
  get sb(): OvsdbServer {
    return this.db('sb');
  }
  get ovs(): OvsdbServer {
    return this.db('ovs');
  }
  private db(name: 'nb' | 'sb' | 'ovs'): OvsdbServer {
    const db = this.dbs[name];
    if (!db) throw new Error(`the ${name} database of this stack is not running`);
    return db;
  }

  register(): void {
    this.unregister = registerCleanup(() => this.stop());
  }

  get nbRemote(): string {
    return this.nb.unixRemote;
  }
  get ovsRemote(): string {
    return this.ovs.unixRemote;
  }

  private get env(): NodeJS.ProcessEnv {
    return isolatedEnv(this.dir);
  }

  vsctl(...args: string[]): Promise<string> {
    return ovnCli('ovs-vsctl', this.ovsRemote, this.env, args);
  }
  nbctl(...args: string[]): Promise<string> {
    return ovnCli('ovn-nbctl', this.nbRemote, this.env, args);
  }
  sbctl(...args: string[]): Promise<string> {
    return ovnCli('ovn-sbctl', this.sb.unixRemote, this.env, args);
  }

  /** Internal interfaces on this stack's bridges, other than the bridges' own. */
  private async internalPorts(): Promise<string[]> {
    const bridges = new Set((await this.vsctl('list-br')).split('\n').filter(Boolean));
    const names = (await this.vsctl('--bare', '--columns=name', 'find', 'Interface', 'type=internal')).split(/\s+/).filter(Boolean);
    return names.filter((n) => !bridges.has(n));
  }

  async start(): Promise<void> {
    const file = (name: string): string => path.join(this.dir, name);
    // allSettled, so that stop() finds whichever did start when one fails.
    const [nb, sb, ovs] = await Promise.allSettled([
      startOvsdbServer({ schema: 'nb', ...(this.nbSsl ? { ssl: this.nbSsl } : {}) }),
      startOvsdbServer({ schema: 'sb' }),
      startOvsdbServer({ schema: 'vswitch' }),
    ]);
    for (const [name, r] of [['nb', nb], ['sb', sb], ['ovs', ovs]] as const) {
      if (r.status === 'fulfilled') this.dbs[name] = r.value;
    }
    for (const r of [nb, sb, ovs]) if (r.status === 'rejected') throw r.reason;
    // NB_Global before northd, so `nbctl --wait=…` works at once and the two
    // do not race to create the single allowed row.
    await this.nbctl('init');
    const northd = ovnBinaries().command('ovn-northd', [
      `--ovnnb-db=${this.nbRemote}`, `--ovnsb-db=${this.sb.unixRemote}`, `--unixctl=${file('northd.ctl')}`, `--log-file=${file('northd.log')}`, '--no-chdir', '-vconsole:off',
    ]);
    this.pids.northd = await startDaemon(northd.cmd, northd.args, { pidfile: file('northd.pid'), env: this.env });

    await this.vsctl('--no-wait', 'init');
    // OVS_RUNDIR=this.dir (via env) is what keeps br-int.mgmt private to this vswitchd.
    const vswitchd = ovnBinaries().command('ovs-vswitchd', [
      this.ovsRemote, `--unixctl=${file('vswitchd.ctl')}`, `--log-file=${file('vswitchd.log')}`, '--no-chdir', '-vconsole:off',
    ]);
    this.pids.vswitchd = await startDaemon(vswitchd.cmd, vswitchd.args, { pidfile: file('vswitchd.pid'), env: this.env });
    await this.vsctl(
      'set', 'Open_vSwitch', '.',
      `external_ids:system-id=${this.systemId}`,
      `external_ids:ovn-remote=${this.sb.unixRemote}`,
      'external_ids:ovn-encap-type=geneve',
      'external_ids:ovn-encap-ip=127.0.0.1',
      'external_ids:ovn-bridge-datapath-type=netdev',
      // ovn-controller would otherwise create br-int itself, with the kernel datapath.
      '--', 'add-br', 'br-int',
      '--', 'set', 'Bridge', 'br-int', 'datapath_type=netdev', 'fail-mode=secure',
    );
    // 23.03 has no --unixctl: its control socket lands in OVN_RUNDIR (this.dir).
    const controller = ovnBinaries().command('ovn-controller', [this.ovsRemote, `--log-file=${file('controller.log')}`, '--no-chdir', '-vconsole:off']);
    this.pids.controller = await startDaemon(controller.cmd, controller.args, { pidfile: file('controller.pid'), env: this.env });
    await waitFor(
      async () => (await this.sbctl('--bare', '--columns=name', 'find', 'Chassis', `name=${this.systemId}`)).trim() === this.systemId,
      { what: `Chassis ${this.systemId} in the SB database`, timeoutMs: 20_000 },
    );
    // Proves northd and the controller both process changes end to end.
    await this.nbctl('--wait=hv', 'sync');
  }

  async stop(): Promise<void> {
    this.unregister();
    this.unregisterExit();
    const errors: unknown[] = [];
    const attempt = async (fn: () => Promise<void>): Promise<void> => {
      await fn().catch((e: unknown) => errors.push(e));
    };
    if (this.pids.controller) await attempt(() => stopPid(this.pids.controller));
    // Internal ports (a driver's host gateways) are persistent taps too, which
    // --cleanup leaves behind: named in this stack's own database, they go first.
    const internal = this.pids.vswitchd ? await this.internalPorts().catch(() => []) : [];
    for (const name of internal) await attempt(async () => void (await this.vsctl('--if-exists', 'del-port', name)));
    if (this.pids.vswitchd) {
      // --cleanup deletes the datapath; a plain SIGTERM would leave its
      // persistent tap devices (ovs-netdev, br-int) in the namespace.
      await attempt(async () => {
        await run('ovs-appctl', ['-t', path.join(this.dir, 'vswitchd.ctl'), 'exit', '--cleanup'], { env: this.env, timeoutMs: 10_000 }).catch(() => undefined);
        await stopPid(this.pids.vswitchd, { graceMs: 5000 });
      });
    }
    await attempt(() => removeDatapathTaps());
    for (const name of internal) await run('ip', ['link', 'del', name]).catch(() => undefined);
    if (this.pids.northd) await attempt(() => stopPid(this.pids.northd));
    for (const db of [this.dbs.ovs, this.dbs.sb, this.dbs.nb]) if (db) await attempt(() => db.stop());
    await attempt(() => removeDir(this.dir));
    this.lock.close();
    if (errors.length > 0) throw new AggregateError(errors, 'OVN stack stop failed');
  }
}

export async function startOvnStack(opts: { lockTimeoutMs?: number; nbSsl?: Pki } = {}): Promise<OvnStack> {
  const lock = await acquireDatapathLock(opts.lockTimeoutMs ?? 300_000);
  const foreign = await vswitchdInThisNetns();
  if (foreign !== undefined) {
    lock.close();
    throw new Error(`ovs-vswitchd pid ${foreign} already runs in this network namespace; a second netdev datapath would clash with its taps`);
  }
  // Left by a test process that died with its stack up; harmless to a new
  // vswitchd, but not ours to leave lying around.
  await removeDatapathTaps();
  const dir = await makeTempDir('stack');
  trackDir(dir);
  const stack = new Stack(dir, lock, opts.nbSsl);
  try {
    await stack.start();
    stack.register();
    return stack;
  } catch (e) {
    await stack.stop().catch(() => undefined);
    throw e;
  }
}
