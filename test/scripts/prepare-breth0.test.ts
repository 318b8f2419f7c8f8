/**
 * scripts/prepare-breth0.sh, run for real inside a "VM": a network namespace
 * whose eth0 (one end of a veth) reaches a "router" namespace, with its own
 * ovsdb-server and ovs-vswitchd (netdev datapath, own OVS_RUNDIR), as
 * test/harness/nested-vm.ts builds its VM. Shown: the move (breth0 holds eth0,
 * the VM's MAC, MTU, addresses and routes; eth0 none; the router answers, also
 * with the kernel's copy of eth0's frames dropped, so through OVS), a second
 * run that changes nothing, --undo and a second --undo, the automatic rollback
 * when --check gets no answer, refusals (no such NIC, a DHCP client on it), and
 * a hang-up of the terminal mid-way that the detached part survives.
 * Everything it makes (two namespaces, two daemons, one dir) goes by exact
 * name and pid.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { ovnCli } from '../harness/ovn-cli.js';
import { startOvsdbServer, type OvsdbServer } from '../harness/ovsdb-server.js';
import {
  CommandError,
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
} from '../harness/process.js';

t.teardown(async () => {
  await lab?.stop();
});

const SCRIPT = fileURLToPath(new URL('../../scripts/prepare-breth0.sh', import.meta.url));
const hex = randomBytes(4).toString('hex');
const VM_NS = `pbr-${hex}-vm`;
const RT_NS = `pbr-${hex}-rt`;
const MAC = '0a:58:0a:fb:00:0a';
const MTU = '1400';
const VM_IP = '10.251.0.10';
const GW = '10.251.0.1';
const GW6 = '2001:db8:251::1';
/** What eth0 holds before the move; all of it must reach breth0 and come back. */
const VM_SETUP: string[][] = [
  ['addr', 'add', `${VM_IP}/24`, 'brd', '+', 'dev', 'eth0'],
  ['addr', 'add', '10.251.0.11/24', 'dev', 'eth0', 'label', 'eth0:1'],
  ['addr', 'add', '2001:db8:251::10/64', 'dev', 'eth0', 'nodad'],
  ['route', 'add', 'default', 'via', GW, 'dev', 'eth0'],
  ['route', 'add', '10.98.0.0/16', 'via', GW, 'metric', '50', 'table', '100', 'dev', 'eth0'],
  ['-6', 'route', 'add', 'default', 'via', GW6, 'dev', 'eth0'],
];

function deleteNetnsSync(ns: string): void {
  try {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 5000 });
  } catch {
    // never created, or already gone
  }
}

class Lab {
  ovs?: OvsdbServer;
  vswitchdPid = 0;
  readonly namespaces: string[] = [];
  /** Other processes this test started (fake DHCP clients), by pid. */
  readonly pids = new Set<number>();
  private readonly unregisterExit: () => void;
  private unregister: () => void = () => undefined;
  private stopping?: Promise<void>;

  constructor(readonly dir: string) {
    this.unregisterExit = onExitSync(() => {
      for (const ns of this.namespaces) deleteNetnsSync(ns);
    });
  }

  get remote(): string {
    if (!this.ovs) throw new Error('the VM has no ovsdb-server');
    return this.ovs.unixRemote;
  }
  get log(): string {
    return path.join(this.dir, 'prepare-breth0.log');
  }
  get env(): NodeJS.ProcessEnv {
    return isolatedEnv(this.dir);
  }

  vsctl(...args: string[]): Promise<string> {
    return ovnCli('ovs-vsctl', this.remote, this.env, args);
  }
  vm(cmd: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
    return run('ip', ['netns', 'exec', VM_NS, cmd, ...args]);
  }

  async start(): Promise<void> {
    this.unregister = registerCleanup(() => this.stop());
    for (const ns of [VM_NS, RT_NS]) {
      await run('ip', ['netns', 'add', ns]);
      this.namespaces.push(ns);
      await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    // Made straight into the two namespaces: no name ever appears in the root one.
    await run('ip', ['link', 'add', 'eth0', 'netns', VM_NS, 'address', MAC, 'mtu', MTU, 'type', 'veth', 'peer', 'name', 'rt0', 'netns', RT_NS, 'mtu', MTU]);
    for (const a of [['addr', 'add', `${GW}/24`, 'dev', 'rt0'], ['addr', 'add', `${GW6}/64`, 'dev', 'rt0', 'nodad'], ['link', 'set', 'rt0', 'up']]) {
      await run('ip', ['-n', RT_NS, ...a]);
    }
    await run('ip', ['-n', VM_NS, 'link', 'set', 'eth0', 'up']);
    for (const a of VM_SETUP) await run('ip', ['-n', VM_NS, ...a]);
    this.ovs = await startOvsdbServer({ schema: 'vswitch' });
    await this.vsctl('--no-wait', 'init');
    this.vswitchdPid = await startDaemon(
      'ip',
      [
        'netns', 'exec', VM_NS, 'ovs-vswitchd', this.remote,
        `--unixctl=${path.join(this.dir, 'vswitchd.ctl')}`, `--log-file=${path.join(this.dir, 'vswitchd.log')}`, '--no-chdir', '-vconsole:off',
      ],
      { pidfile: path.join(this.dir, 'vswitchd.pid'), env: this.env },
    );
  }

  /** The detached parts the script started (from its log), by pid. */
  detachedPids(): number[] {
    const log = existsSync(this.log) ? readFileSync(this.log, 'utf8') : '';
    return [...log.matchAll(/detached part started \(pid (\d+)\)/g)].map((m) => Number(m[1]));
  }

  stop(): Promise<void> {
    this.stopping ??= this.teardown();
    return this.stopping;
  }

  private async teardown(): Promise<void> {
    this.unregister();
    const errors: unknown[] = [];
    const attempt = async (fn: () => Promise<unknown>): Promise<void> => {
      await fn().catch((e: unknown) => errors.push(e));
    };
    // A detached part still running (a test that failed half-way) is stopped
    // by its pid, if that pid is still the script.
    for (const pid of this.detachedPids()) {
      const cmdline = existsSync(`/proc/${pid}/cmdline`) ? readFileSync(`/proc/${pid}/cmdline`, 'utf8') : '';
      if (cmdline.includes('prepare-breth0.sh')) await attempt(() => stopPid(pid));
    }
    for (const pid of this.pids) await attempt(() => stopPid(pid));
    if (this.vswitchdPid) await attempt(() => stopPid(this.vswitchdPid, { graceMs: 5000 }));
    for (const ns of this.namespaces.splice(0)) await attempt(() => run('ip', ['netns', 'del', ns]));
    this.unregisterExit();
    if (this.ovs) {
      const ovs = this.ovs;
      await attempt(() => ovs.stop());
    }
    await attempt(() => removeDir(this.dir));
    if (errors.length > 0) throw new AggregateError(errors, 'prepare-breth0 lab stop failed');
  }
}

let lab: Lab | undefined;
const L = (): Lab => {
  if (!lab) throw new Error('the lab did not start');
  return lab;
};

interface Outcome {
  code: number | string | null;
  out: string;
}

/** The script inside the VM, as the brief's command line has it, plus --db and a private --log. */
async function script(...args: string[]): Promise<Outcome> {
  const l = L();
  try {
    const r = await run('ip', ['netns', 'exec', VM_NS, 'env', `OVS_RUNDIR=${l.dir}`, SCRIPT, '--db', l.remote, '--log', l.log, ...args], {
      env: l.env,
      timeoutMs: 120_000,
    });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (e) {
    if (e instanceof CommandError) return { code: e.exitCode, out: e.stdout + e.stderr };
    throw e;
  }
}

/**
 * The VM's addresses and routes, comparable across runs: interface indexes and
 * lifetimes left out; ovs-netdev (the datapath's own tap, down) left out.
 */
async function netState(): Promise<string[]> {
  // A new link's link-local address (eth0's at the start, breth0's) is "tentative" for a second or two.
  await waitFor(async () => !/tentative/.test((await run('ip', ['-n', VM_NS, '-6', 'addr', 'show'])).stdout), {
    what: 'IPv6 addresses in the VM to leave DAD',
  });
  const addrs = (await run('ip', ['-n', VM_NS, '-o', 'addr', 'show'])).stdout
    .split('\n')
    .map((l) => l.replace(/^\d+:\s+/, '').replace(/\\.*$/, '').trim());
  const routes: string[] = [];
  for (const fam of ['-4', '-6']) routes.push(...(await run('ip', ['-n', VM_NS, fam, 'route', 'show', 'table', 'all'])).stdout.split('\n'));
  return [...addrs, ...routes.map((r) => r.trim())].filter((l) => l && !l.includes('ovs-netdev')).sort();
}

const addrsOf = async (dev: string, fam: '-4' | '-6'): Promise<string[]> =>
  (await run('ip', ['-n', VM_NS, '-o', fam, 'addr', 'show', 'dev', dev, 'scope', 'global']).catch(() => ({ stdout: '' }))).stdout
    .split('\n')
    .map((l) => /\sinet6?\s(\S+)/.exec(l)?.[1])
    .filter((a): a is string => a !== undefined);

const routesOf = async (fam: '-4' | '-6', ...sel: string[]): Promise<string> =>
  (await run('ip', ['-n', VM_NS, fam, 'route', 'show', ...sel])).stdout.trim();

const linkExists = (dev: string): Promise<boolean> =>
  run('ip', ['-n', VM_NS, 'link', 'show', 'dev', dev]).then(
    () => true,
    () => false,
  );

const linkAttr = async (dev: string, attr: 'address' | 'mtu'): Promise<string> => {
  const { stdout } = await run('ip', ['-n', VM_NS, '-j', 'link', 'show', 'dev', dev]);
  const link = (JSON.parse(stdout) as { address?: string; mtu?: number }[])[0];
  return String(link?.[attr] ?? '');
};

const bridges = async (): Promise<string[]> => (await L().vsctl('list-br')).split('\n').filter(Boolean);

/** `ping -c N` from the VM: its output, or '' when nothing answered. */
async function pingFromVm(ip: string, count = 1): Promise<string> {
  try {
    return (await run('ip', ['netns', 'exec', VM_NS, 'ping', '-n', `-c${count}`, '-i0.2', '-W2', ip])).stdout;
  } catch {
    return '';
  }
}
const answered = (out: string, n = 1): boolean => new RegExp(`\\b${n} received`).test(out);

/** What the move must leave, asserted in full (used after the hang-up too). */
async function assertMoved(t: Test): Promise<void> {
  t.same(await bridges(), ['breth0'], 'one bridge, breth0');
  t.same((await L().vsctl('list-ports', 'breth0')).split('\n').filter(Boolean), ['eth0'], 'eth0 is its one port');
  t.equal(await linkAttr('breth0', 'address'), MAC, "breth0 has the VM's MAC (eth0's)");
  t.equal(await linkAttr('breth0', 'mtu'), MTU, "breth0 has eth0's MTU");
  t.same((await addrsOf('breth0', '-4')).sort(), [`${VM_IP}/24`, '10.251.0.11/24'], 'breth0 has 10.251.0.10/24 and the secondary address');
  t.same(await addrsOf('breth0', '-6'), ['2001:db8:251::10/64'], 'breth0 has the IPv6 address');
  t.equal(await routesOf('-4', 'default'), `default via ${GW} dev breth0`, 'the default route is through breth0');
  t.match(await routesOf('-6', 'default'), new RegExp(`^default via ${GW6} dev breth0 `), 'the IPv6 default route too');
  t.match(await routesOf('-4', 'table', '100'), /^10\.98\.0\.0\/16 via 10\.251\.0\.1 dev breth0 metric 50/, 'a route of table 100 too');
  t.same(await addrsOf('eth0', '-4'), [], 'eth0 has no IPv4 address left');
  t.same(await addrsOf('eth0', '-6'), [], 'eth0 has no global IPv6 address left');
  t.equal(await routesOf('-4', 'table', 'all', 'dev', 'eth0'), '', 'no IPv4 route through eth0 left');
}

async function assertRestored(t: Test, before: string[], what: string): Promise<void> {
  t.same(await netState(), before, `${what}: the VM's addresses and routes are exactly those of before the move`);
  t.same(await addrsOf('eth0', '-4'), [`${VM_IP}/24`, '10.251.0.11/24'], `${what}: eth0 has its addresses back`);
  t.equal(await routesOf('-4', 'default'), `default via ${GW} dev eth0`, `${what}: the default route is through eth0 again`);
  t.notOk(await linkExists('breth0'), `${what}: no interface breth0`);
  t.same(await bridges(), [], `${what}: no bridge in OVS`);
  t.ok(answered(await pingFromVm(GW)), `${what}: the VM pings ${GW} again`);
}

let before: string[] = [];

t.before(async () => {
  const dir = await makeTempDir('prepare-breth0');
  trackDir(dir);
  lab = new Lab(dir);
  await mkdir(dir, { recursive: true });
  await lab.start();
  before = await netState();
});

t.test('the lab: the VM reaches its router through eth0', async (t) => {
  t.ok(answered(await pingFromVm(GW)), `ping ${GW}`);
  t.ok(answered(await pingFromVm(GW6)), `ping ${GW6}`);
  t.same(await bridges(), [], 'no bridge yet');
  t.ok(before.some((l) => l.startsWith(`eth0    inet ${VM_IP}/24`)), 'eth0 holds the address');
});

t.test('refusal: a NIC that does not exist', async (t) => {
  const r = await script('--datapath', 'netdev', 'eth9');
  t.not(r.code, 0, 'non-zero exit');
  t.match(r.out, /there is no interface eth9 here; nothing changed/);
  t.same(await netState(), before, 'nothing changed');
  t.same(await bridges(), [], 'no bridge');
});

t.test('refusal: a DHCP client runs for eth0 (in this namespace only)', async (t) => {
  const l = L();
  // Named udhcpc by its file name (the kernel's comm), "-i eth0" on its command line; no child process.
  const fake = path.join(l.dir, 'udhcpc');
  await writeFile(fake, '#!/bin/bash\nread -r -t 120 _ <>"$0.fifo"\n', { mode: 0o755 });
  await run('mkfifo', [`${fake}.fifo`]);
  const startFake = async (ns: string): Promise<number> => {
    const child = spawn('ip', ['netns', 'exec', ns, fake, '-i', 'eth0'], { stdio: 'ignore' });
    const pid = child.pid;
    if (pid === undefined) throw new Error('fake DHCP client did not start');
    l.pids.add(pid);
    await waitFor(() => existsSync(`/proc/${pid}/comm`) && readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'udhcpc', { what: 'the fake udhcpc' });
    return pid;
  };
  const stopFake = async (pid: number): Promise<void> => {
    await stopPid(pid);
    l.pids.delete(pid);
  };

  const inVm = await startFake(VM_NS);
  const r = await script('--datapath', 'netdev', 'eth0');
  t.equal(r.code, 1, 'exit 1');
  t.match(r.out, new RegExp(`a DHCP client runs for eth0: udhcpc:${inVm}`), 'names the client');
  t.match(r.out, /stop the DHCP client on eth0 and run one on\s+breth0/, "tells what to do, as OVN's documentation says");
  t.same(await netState(), before, 'nothing changed');
  t.same(await bridges(), [], 'no bridge');
  await stopFake(inVm);

  // The same client in another namespace (the host's eth0, say) is none of this VM's business.
  const elsewhere = await startFake(RT_NS);
  const dry = await script('--dry-run', '--datapath', 'netdev', 'eth0');
  t.equal(dry.code, 0, `a client in another namespace is ignored: ${dry.out}`);
  t.match(dry.out, /--dry-run: nothing changed/);
  t.match(dry.out, /ovs-vsctl add-br breth0 -- set Bridge breth0 other-config:hwaddr="0a:58:0a:fb:00:0a" datapath_type=netdev -- set Interface breth0 mtu_request=1400 -- add-port breth0 eth0/, 'the plan names the one transaction');
  t.same(await netState(), before, '--dry-run changed nothing');
  await stopFake(elsewhere);
});

t.test('the move', async (t) => {
  const r = await script('--datapath', 'netdev', 'eth0');
  t.equal(r.code, 0, 'exit 0');
  t.comment(r.out);
  t.match(r.out, /plan: eth0 \(MAC 0a:58:0a:fb:00:0a, MTU 1400\)/, 'prints what it will do');
  t.match(r.out, new RegExp(`ping ${GW}: answered`), 'checked the default gateway');
  t.match(r.out, /done: eth0 is a port of breth0/, 'prints what it did');
  await assertMoved(t);

  const dup = await pingFromVm(GW, 3);
  t.ok(answered(dup, 3), `the VM pings ${GW} after the move`);
  t.comment(`with the kernel's copy of eth0's frames: ${/duplicates/.test(dup) ? 'DUP! replies, as machine-notes says' : 'no duplicates'}`);
  // As the harness does (nested-vm.ts): drop what eth0's kernel side receives,
  // so that the replies can only come through vswitchd and breth0.
  const drop = ['-w', '-t', 'raw', 'PREROUTING', '-i', 'eth0', '-j', 'DROP'];
  const rule = (op: '-A' | '-D'): string[] => [...drop.slice(0, 3), op, ...drop.slice(3)];
  for (const tool of ['iptables', 'ip6tables']) await L().vm(tool, rule('-A'));
  try {
    const v4 = await pingFromVm(GW, 3);
    t.ok(answered(v4, 3) && !/duplicates/.test(v4), `ping ${GW} through OVS alone: 3 of 3, no duplicates`);
    const v6 = await pingFromVm(GW6, 3);
    t.ok(answered(v6, 3) && !/duplicates/.test(v6), `ping ${GW6} through OVS alone: 3 of 3, no duplicates`);
  } finally {
    for (const tool of ['iptables', 'ip6tables']) await L().vm(tool, rule('-D'));
  }
});

t.test('running it again changes nothing and exits 0', async (t) => {
  const moved = await netState();
  const r = await script('--datapath', 'netdev', 'eth0');
  t.equal(r.code, 0, 'exit 0');
  t.match(r.out, /eth0 is already a port of breth0: nothing to do/);
  t.same(await netState(), moved, 'addresses and routes as they were');
  await assertMoved(t);
});

t.test('--undo', async (t) => {
  const r = await script('--undo', 'eth0');
  t.equal(r.code, 0, `exit 0: ${r.out}`);
  t.match(r.out, /done: breth0 deleted; eth0 holds 3 address\(es\) and 3 route\(s\) again/);
  await assertRestored(t, before, 'after --undo');
  const again = await script('--undo', 'eth0');
  t.equal(again.code, 0, 'a second --undo exits 0');
  t.match(again.out, /there is no bridge breth0: nothing to undo/);
  t.same(await netState(), before, 'and changes nothing');
});

t.test('rollback: --check gets no answer', async (t) => {
  const started = Date.now();
  const r = await script('--datapath', 'netdev', '--check', '10.251.0.99', '--confirm-timeout', '3', 'eth0');
  t.comment(`${Date.now() - started} ms`);
  t.comment(r.out);
  t.equal(r.code, 3, 'exit 3 (rolled back)');
  t.match(r.out, /\+ ip -4 route add default via 10\.251\.0\.1 dev breth0/, 'the move did happen first');
  t.match(r.out, /ping 10\.251\.0\.99: no answer/, 'says what failed');
  t.match(r.out, /ROLLING BACK: 10\.251\.0\.99 did not answer a ping within 3 s through breth0/);
  t.match(r.out, /rolled back: breth0 is gone and eth0 holds its addresses and routes again, as before/, 'says it rolled back');
  await assertRestored(t, before, 'after the rollback');
});

t.test('a hang-up of the terminal mid-way does not stop the change', async (t) => {
  const l = L();
  // The router ignores pings for a while, so the check is still waiting when the terminal goes.
  const icmpDrop = (op: '-A' | '-D'): Promise<unknown> =>
    run('ip', ['netns', 'exec', RT_NS, 'iptables', '-w', op, 'INPUT', '-p', 'icmp', '--icmp-type', 'echo-request', '-j', 'DROP']);
  await icmpDrop('-A');
  let dropped = true;
  try {
    const child = spawn(
      'ip',
      ['netns', 'exec', VM_NS, 'env', `OVS_RUNDIR=${l.dir}`, SCRIPT, '--db', l.remote, '--log', l.log, '--datapath', 'netdev', '--confirm-timeout', '60', 'eth0'],
      // Its own process group, as a login session's foreground job.
      { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: l.env },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.on('exit', (code, signal) => resolve(signal ?? code)));
    const pgid = child.pid;
    if (pgid === undefined) throw new Error('the script did not start');
    await waitFor(() => out.includes(`+ ip -4 route add default via ${GW} dev breth0`), { what: 'the script to move the routes', timeoutMs: 60_000 });
    const detached = await waitFor(() => l.detachedPids().at(-1), { what: 'the detached part' });
    process.kill(-pgid, 'SIGHUP');
    t.equal(await exited, 'SIGHUP', 'the terminal side died of the hang-up');
    t.ok(isAlive(detached), `the detached part (pid ${detached}) lives on`);
    const logNow = readFileSync(l.log, 'utf8');
    t.notMatch(logNow.slice(logNow.lastIndexOf('detached part started')), /finished/, 'and has not finished: the hang-up came mid-way');

    await icmpDrop('-D');
    dropped = false;
    await waitFor(() => !isAlive(detached), { what: 'the detached part to finish', timeoutMs: 90_000, intervalMs: 200 });
    const log = readFileSync(l.log, 'utf8');
    const tail = log.slice(log.lastIndexOf('detached part started'));
    t.comment(tail);
    t.match(tail, new RegExp(`ping ${GW}: answered`), 'its check succeeded once the router answered');
    t.match(tail, /finished \(exit 0\)/, 'it finished with exit 0');
    await assertMoved(t);
    t.ok(answered(await pingFromVm(GW)), `the VM pings ${GW}`);
  } finally {
    if (dropped) await icmpDrop('-D');
  }
  const r = await script('--undo', 'eth0');
  t.equal(r.code, 0, '--undo after it: exit 0');
  await assertRestored(t, before, 'after the last --undo');
});

t.test('nothing the script started is left running', async (t) => {
  const pids = L().detachedPids();
  t.ok(pids.length >= 4, `${pids.length} detached parts were started`);
  t.same(pids.filter(isAlive), [], 'none is alive');
});
