/**
 * The harness itself: each kind of private server starts, does its job, and
 * leaves no process, directory, namespace or interface behind.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import t, { type Test } from 'tap';
import { startNbCluster } from './cluster.js';
import { ovnBinaries, type OvnTool } from './ovn-binaries.js';
import { startOvnStack, type OvnStack } from './ovn-stack.js';
import { startOvsdbServer } from './ovsdb-server.js';
import { makePki } from './pki.js';
import { CommandError, isAlive, makeTempDir, removeDir, run, stopAll, trackDir, waitFor } from './process.js';

t.teardown(stopAll);

function timed<T>(t: { comment(msg: string): void }, what: string, fn: () => Promise<T>): Promise<T> {
  const started = Date.now();
  return fn().then((v) => {
    t.comment(`${what}: ${Date.now() - started} ms`);
    return v;
  });
}

const listDbs = (remote: string, ...tls: string[]): Promise<string> =>
  run('ovsdb-client', ['--timeout=5', ...tls, 'list-dbs', remote]).then((r) => r.stdout);

const insertSwitch = (remote: string, name: string): Promise<unknown> =>
  run('ovsdb-client', ['--timeout=10', 'transact', remote, JSON.stringify(['OVN_Northbound', { op: 'insert', table: 'Logical_Switch', row: { name } }])]);

async function switchNames(remote: string): Promise<string[]> {
  const { stdout } = await run('ovsdb-client', [
    '--timeout=10', 'transact', remote,
    JSON.stringify(['OVN_Northbound', { op: 'select', table: 'Logical_Switch', where: [], columns: ['name'] }]),
  ]);
  const [result] = JSON.parse(stdout) as [{ rows: { name: string }[] }];
  return result.rows.map((r) => r.name);
}

t.test('process helpers report failures clearly', async (t) => {
  const err = await run('ovsdb-tool', ['create', '/nonexistent/x.db', '/nonexistent.ovsschema']).catch((e: unknown) => e);
  t.type(err, CommandError);
  t.match((err as Error).message, /ovsdb-tool create \/nonexistent\/x\.db .*failed \(exit 1\)/);
  await t.rejects(waitFor(() => false, { what: 'the impossible', timeoutMs: 100 }), /timed out after 100 ms waiting for the impossible/);
});

t.test('ovsdb-server over unix, tcp and mutual-TLS ssl; kill and restart keep the data', async (t) => {
  const pkiDir = await makeTempDir('pki');
  trackDir(pkiDir);
  const pki = await timed(t, 'makePki', () => makePki(pkiDir));
  const server = await timed(t, 'startOvsdbServer(nb, tcp, ssl)', () => startOvsdbServer({ schema: 'nb', tcp: true, ssl: pki }));
  t.match(server.unixRemote, /^unix:\/.*\/db\.sock$/);
  t.match(server.tcpRemote, /^tcp:127\.0\.0\.1:\d+$/);
  t.match(server.sslRemote, /^ssl:127\.0\.0\.1:\d+$/);

  t.match(await listDbs(server.unixRemote), /OVN_Northbound/, 'unix');
  t.match(await listDbs(server.tcpRemote!), /OVN_Northbound/, 'tcp');
  t.match(await listDbs(server.sslRemote!, '-p', pki.clientKey, '-c', pki.clientCert, '-C', pki.caCert), /OVN_Northbound/, 'ssl with our CA');
  await t.rejects(listDbs(server.sslRemote!, '-p', pki.rogueClientKey, '-c', pki.rogueClientCert, '-C', pki.caCert), CommandError, 'ssl with a rogue client certificate');
  await t.rejects(listDbs(server.sslRemote!, '-p', pki.clientKey, '-c', pki.clientCert, '-C', pki.rogueCaCert), CommandError, 'ssl trusting the wrong CA');
  t.match(await server.appctl('ovsdb-server/list-remotes'), /punix:/);

  await insertSwitch(server.unixRemote, 'survivor');
  const firstPid = server.pid;
  await server.kill();
  t.notOk(isAlive(firstPid), 'killed');
  await t.rejects(listDbs(server.tcpRemote!), CommandError, 'tcp remote down while killed');
  await timed(t, 'restart', () => server.start());
  t.not(server.pid, firstPid, 'a new process');
  t.same(await switchNames(server.tcpRemote!), ['survivor'], 'data kept, same tcp port');
  t.match(await listDbs(server.sslRemote!, '-p', pki.clientKey, '-c', pki.clientCert, '-C', pki.caCert), /OVN_Northbound/, 'same ssl port');

  await server.stop();
  t.notOk(isAlive(server.pid), 'process gone after stop');
  t.notOk(existsSync(server.dir), 'dir removed');
  await removeDir(pkiDir);
});

t.test('a three-member NB cluster elects a leader and leadership moves', async (t) => {
  const cluster = await timed(t, 'startNbCluster(3)', () => startNbCluster(3));
  t.equal(cluster.members.length, 3);
  t.equal(cluster.remotes.split(',').length, 3);
  const leader = await cluster.leaderIndex();
  t.ok(cluster.members[leader]?.running, `member ${leader} leads`);

  await insertSwitch(cluster.members[leader]!.tcpRemote, 'replicated');
  const moved = await timed(t, 'transferLeadership', () => cluster.transferLeadership());
  t.not(moved, leader, `leadership moved from ${leader} to ${moved}`);
  t.equal(await cluster.leaderIndex(), moved);
  t.ok(cluster.members.every((m) => m.running), 'every member back up');
  for (const m of cluster.members) {
    t.same(await switchNames(m.tcpRemote), ['replicated'], `member ${m.index} has the data`);
  }

  const pids = cluster.members.map((m) => m.pid);
  const dirs = cluster.members.map((m) => m.dir);
  await cluster.stop();
  t.ok(pids.every((p) => !isAlive(p)), 'member processes gone');
  t.ok(dirs.every((d) => !existsSync(d)), 'member dirs removed');
});

/** One end in namespace ns, the other on br-int bound to the logical port. */
interface Endpoint {
  port: string;
  ns: string;
  hostIf: string;
  nsIf: string;
  mac: string;
  ip: string;
}

async function plug(stack: OvnStack, sw: string, e: Endpoint): Promise<void> {
  await stack.nbctl('lsp-add', sw, e.port, '--', 'lsp-set-addresses', e.port, `${e.mac} ${e.ip}`);
  await run('ip', ['netns', 'add', e.ns]);
  await run('ip', ['link', 'add', e.hostIf, 'type', 'veth', 'peer', 'name', e.nsIf, 'netns', e.ns]);
  await run('ip', ['-n', e.ns, 'link', 'set', e.nsIf, 'address', e.mac]);
  await run('ip', ['-n', e.ns, 'addr', 'add', `${e.ip}/24`, 'dev', e.nsIf]);
  await run('ip', ['-n', e.ns, 'link', 'set', e.nsIf, 'up']);
  await run('ip', ['-n', e.ns, 'link', 'set', 'lo', 'up']);
  // The userspace datapath forwards partial checksums unfinished (machine notes).
  await run('ip', ['netns', 'exec', e.ns, 'ethtool', '-K', e.nsIf, 'tx', 'off']);
  await run('ip', ['link', 'set', e.hostIf, 'up']);
  await stack.vsctl('add-port', 'br-int', e.hostIf, '--', 'set', 'Interface', e.hostIf, `external_ids:iface-id=${e.port}`);
}

async function unplug(e: Endpoint): Promise<void> {
  // Deleting our veth end removes its peer; both by exact name.
  await run('ip', ['link', 'del', 'dev', e.hostIf]).catch(() => undefined);
  await run('ip', ['netns', 'del', e.ns]).catch(() => undefined);
}

/** A one-shot TCP echo server inside ns; resolves once it listens. */
function tcpEcho(ns: string, ip: string, port: number): Promise<{ pid: number; done: Promise<void> }> {
  const script = `require('net').createServer((s) => s.pipe(s)).listen(${port}, '${ip}', () => console.log('listening'))`;
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const done = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.stdout.once('data', () => resolve({ pid: child.pid ?? 0, done }));
    void done.then(() => reject(new Error('echo server exited early')));
  });
}

/**
 * Every daemon of the stack is the one ovn-binaries.ts chose (OVN_TEST_ROOT or
 * the host's), by the version it reports over unixctl, and is named as its
 * program in /proc/PID/comm (what the datapath check and pgrep go by).
 */
async function runsChosenBinaries(t: Test, stack: OvnStack): Promise<void> {
  const binaries = ovnBinaries();
  t.comment(`binaries: ${binaries.description}`);
  const version = async (tool: OvnTool): Promise<string> => {
    const { cmd, args } = binaries.command(tool, ['--version']);
    return (await run(cmd, args)).stdout.split('\n')[0]!.trim();
  };
  const daemons: [OvnTool, number, string][] = [
    ['ovn-northd', stack.pids.northd, `${stack.dir}/northd.ctl`],
    ['ovs-vswitchd', stack.pids.vswitchd, `${stack.dir}/vswitchd.ctl`],
    // Its default control socket, in OVN_RUNDIR (the stack's dir).
    ['ovn-controller', stack.pids.controller, `${stack.dir}/ovn-controller.${stack.pids.controller}.ctl`],
    ['ovsdb-server', stack.nb.pid, stack.nb.ctlPath],
  ];
  for (const [tool, pid, ctlPath] of daemons) {
    const expected = await version(tool);
    const { stdout } = await run('ovs-appctl', ['-t', ctlPath, 'version']);
    t.equal(stdout.split('\n')[0]!.trim(), expected, `${tool} pid ${pid} is ${expected}`);
    t.equal(readFileSync(`/proc/${pid}/comm`, 'utf8').trim(), tool, `${tool} pid ${pid} is named ${tool}`);
  }
}

t.test('a single-chassis OVN stack forwards ping and TCP between two namespaces', async (t) => {
  const stack = await timed(t, 'startOvnStack', () => startOvnStack());
  const sfx = randomBytes(3).toString('hex');
  const sw = `ls-${sfx}`;
  const endpoints: Endpoint[] = ['a', 'b'].map((x, i) => ({
    port: `lp-${sfx}-${x}`,
    ns: `ovnt-${sfx}-${x}`,
    hostIf: `vh${sfx}${x}`,
    nsIf: `vc${sfx}${x}`,
    mac: `0a:58:0a:63:00:${(0x11 + i).toString(16)}`,
    ip: `10.99.0.${11 + i}`,
  }));
  const [a, b] = endpoints as [Endpoint, Endpoint];
  t.teardown(async () => {
    for (const e of endpoints) await unplug(e);
  });

  t.match(await stack.sbctl('--bare', '--columns=name', 'list', 'Chassis'), stack.systemId);
  await runsChosenBinaries(t, stack);
  await stack.nbctl('ls-add', sw);
  for (const e of endpoints) await plug(stack, sw, e);
  await timed(t, 'ports up', () =>
    waitFor(
      async () => {
        for (const e of endpoints) if ((await stack.nbctl('get', 'Logical_Switch_Port', e.port, 'up')).trim() !== 'true') return false;
        return true;
      },
      { what: 'both logical ports up', timeoutMs: 20_000 },
    ),
  );

  const ping = await run('ip', ['netns', 'exec', a.ns, 'ping', '-c1', '-W2', b.ip]);
  t.match(ping.stdout, /1 received/, `${a.ns} pings ${b.ip}`);

  const echo = await tcpEcho(b.ns, b.ip, 7777);
  try {
    const client = `const s = require('net').connect(7777, '${b.ip}', () => s.end('hello over ovn')); s.setTimeout(5000, () => process.exit(2)); s.on('data', (d) => process.stdout.write(d));`;
    const { stdout } = await run('ip', ['netns', 'exec', a.ns, process.execPath, '-e', client], { timeoutMs: 10_000 });
    t.equal(stdout, 'hello over ovn', 'tcp echo through the userspace datapath');
  } finally {
    process.kill(echo.pid, 'SIGTERM');
    await echo.done;
  }

  for (const e of endpoints) await unplug(e);
  // An internal port left on the bridge, as a driver's host gateway is when a test ends with its network.
  const internal = `ig${sfx}`;
  await stack.vsctl('add-port', 'br-int', internal, '--', 'set', 'Interface', internal, 'type=internal');
  await waitFor(() => run('ip', ['link', 'show', 'dev', internal]).then(() => true, () => false), { what: `tap ${internal}` });
  const { stdout: netns } = await run('ip', ['netns', 'list']);
  t.notMatch(netns, sfx, 'namespaces removed');
  const pids = [...Object.values(stack.pids), stack.nb.pid, stack.sb.pid, stack.ovs.pid];
  const dirs = [stack.dir, stack.nb.dir, stack.sb.dir, stack.ovs.dir];
  await timed(t, 'stack stop', () => stack.stop());
  t.ok(pids.every((p) => !isAlive(p)), 'every stack process gone');
  t.ok(dirs.every((d) => !existsSync(d)), 'every stack dir removed');
  await t.rejects(run('ip', ['link', 'show', 'dev', 'ovs-netdev']), CommandError, 'datapath tap removed');
  await t.rejects(run('ip', ['link', 'show', 'dev', internal]), CommandError, "an internal port's tap removed");
});
