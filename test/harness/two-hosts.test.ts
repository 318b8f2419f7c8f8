/**
 * The two-chassis harness: ports on the two hosts reach each other through
 * a geneve tunnel (ping and TCP), each host runs a Docker engine of its own in
 * its namespace, and stop() leaves no process, namespace or link behind.
 */
import { readlinkSync, statSync } from 'node:fs';
import t from 'tap';
import { ensureBusyboxImage, startDockerEngine, type DockerEngine } from './docker.js';
import { createNetns, deleteNetns, ping, tcpEcho, tcpRoundTrip } from './netns.js';
import { makePluginDirs, type PluginDirs } from './plugin-dirs.js';
import { isAlive, run, stopAll, waitFor } from './process.js';
import { startTwoHosts, type Host, type TwoHosts } from './two-hosts.js';

t.teardown(stopAll);

async function timed<T>(t: { comment(msg: string): void }, what: string, fn: () => Promise<T>): Promise<T> {
  const started = Date.now();
  const v = await fn();
  t.comment(`${what}: ${Date.now() - started} ms`);
  return v;
}

const rootLinks = async (): Promise<string[]> =>
  (await run('ip', ['-o', 'link', 'show'])).stdout
    .split('\n')
    .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1])
    .filter((n): n is string => n !== undefined)
    .sort();

const netnsNames = async (): Promise<string[]> =>
  (await run('ip', ['netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter(Boolean);

/** The inode that identifies a network namespace, from its name or a process. */
const nsInode = (netns: string): number => statSync(`/var/run/netns/${netns}`).ino;
const pidNetInode = (pid: number): number => Number(/^net:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/ns/net`))?.[1]);

/**
 * A stand-in container on `host`: a namespace of its own whose eth0 is one end
 * of a veth created inside the host namespace (as the driver does), the other
 * end on the host's br-int bound to logical port `lsp`.
 */
async function plugFakeContainer(host: Host, lsp: string, mac: string, cidr: string, created: string[]): Promise<string> {
  const ns = await createNetns('ovnc');
  created.push(ns);
  const hostIf = `h-${lsp}`;
  await host.exec('ip', ['link', 'add', hostIf, 'mtu', '1442', 'type', 'veth', 'peer', 'name', 'ceth0', 'mtu', '1442']);
  await host.exec('ip', ['link', 'set', 'ceth0', 'netns', ns]);
  await run('ip', ['-n', ns, 'link', 'set', 'ceth0', 'name', 'eth0']);
  await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'address', mac]);
  await run('ip', ['-n', ns, 'addr', 'add', cidr, 'dev', 'eth0']);
  await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
  // Userspace datapath: without this, TCP leaves with partial checksums (machine-notes).
  await run('ip', ['netns', 'exec', ns, 'ethtool', '-K', 'eth0', 'tx', 'off']);
  await host.exec('ip', ['link', 'set', hostIf, 'up']);
  await host.vsctl('add-port', 'br-int', hostIf, '--', 'set', 'Interface', hostIf, `external_ids:iface-id=${lsp}`);
  return ns;
}

let hosts: TwoHosts | undefined;
let linksBefore: string[] = [];
/** The stand-in containers' namespaces, by exact name. */
const containerNamespaces: string[] = [];
/** Link names this test makes or the harness makes in the hosts: none may show up in the root namespace. */
const OURS = /^(phy-[ab]|h-p[ab]|ceth0|br-phy|ovngw[0-9a-f]{8})$/;

t.test('two chassis come up', async (t) => {
  linksBefore = await rootLinks();
  hosts = await timed(t, 'startTwoHosts', () => startTwoHosts());
  const [a, b] = hosts.hosts;
  t.not(a.netns, b.netns);
  t.match(a.netns, /^ovnh-[0-9a-f]{8}-a$/);
  t.equal(a.tunnelIp, '192.168.250.1');
  t.equal(b.tunnelIp, '192.168.250.2');
  for (const h of hosts.hosts) {
    for (const [daemon, pid] of Object.entries(h.pids)) t.ok(isAlive(pid), `host ${h.name}: ${daemon} alive`);
    t.equal(pidNetInode(h.pids.vswitchd), nsInode(h.netns), `host ${h.name}: vswitchd in its namespace`);
    t.equal(pidNetInode(h.pids.controller), nsInode(h.netns), `host ${h.name}: ovn-controller in its namespace`);
    t.match((await h.exec('ip', ['-o', '-4', 'addr', 'show', 'dev', 'br-phy'])).stdout, `inet ${h.tunnelIp}/24`, `host ${h.name}: tunnel IP on br-phy`);
  }
  t.ok(isAlive(hosts.northdPid), 'northd alive');
  const encaps = await hosts.sbctl('--bare', '--columns=ip', 'find', 'Encap', 'type=geneve');
  t.same(encaps.split(/\s+/).filter(Boolean).sort(), ['192.168.250.1', '192.168.250.2'], 'one geneve Encap per host');
});

t.test('(a) ports on the two hosts talk through geneve', async (t) => {
  if (!hosts) return t.fail('no hosts');
  const h = hosts;
  const [a, b] = h.hosts;
  const containers = containerNamespaces;
  t.teardown(async () => {
    for (const ns of containers) await deleteNetns(ns);
    await h.nbctl('--if-exists', 'ls-del', 'sw0').catch(() => undefined);
  });

  await h.nbctl('ls-add', 'sw0');
  await h.nbctl('lsp-add', 'sw0', 'pa', '--', 'lsp-set-addresses', 'pa', '0a:00:00:00:00:01 10.60.0.1');
  await h.nbctl('lsp-add', 'sw0', 'pb', '--', 'lsp-set-addresses', 'pb', '0a:00:00:00:00:02 10.60.0.2');
  const nsA = await plugFakeContainer(a, 'pa', '0a:00:00:00:00:01', '10.60.0.1/24', containers);
  const nsB = await plugFakeContainer(b, 'pb', '0a:00:00:00:00:02', '10.60.0.2/24', containers);
  await timed(t, 'both ports up', () =>
    waitFor(
      async () => (await h.nbctl('get', 'Logical_Switch_Port', 'pa', 'up')).trim() === 'true' && (await h.nbctl('get', 'Logical_Switch_Port', 'pb', 'up')).trim() === 'true',
      { what: 'pa and pb up', timeoutMs: 20_000, intervalMs: 100 },
    ),
  );

  // `up` says the local claim is done; the remote port's flows (on the other
  // host) may still be on their way: wait until both controllers caught up.
  await h.nbctl('--wait=hv', 'sync');

  // Bound to different chassis, and each host has a geneve port toward the other.
  const chassisOf = async (lsp: string): Promise<string> => {
    const uuid = (await h.sbctl('--bare', '--columns=chassis', 'find', 'Port_Binding', `logical_port=${lsp}`)).trim();
    return (await h.sbctl('--bare', '--columns=name', 'list', 'Chassis', uuid)).trim();
  };
  t.equal(await chassisOf('pa'), a.systemId, 'pa bound on host a');
  t.equal(await chassisOf('pb'), b.systemId, 'pb bound on host b');
  for (const [host, peer] of [[a, b], [b, a]] as const) {
    const show = await host.vsctl('show');
    t.match(show, /type: geneve/, `host ${host.name}: geneve port on br-int`);
    t.match(show, `remote_ip="${peer.tunnelIp}"`, `host ${host.name}: tunnel toward ${peer.tunnelIp}`);
  }

  // The first packets may race the tunnel's ARP resolution on br-phy.
  await timed(t, 'first ping a -> b', () => waitFor(() => ping(nsA, '10.60.0.2'), { what: 'ping a -> b', timeoutMs: 15_000, intervalMs: 200 }));
  t.ok(await ping(nsB, '10.60.0.1'), 'ping b -> a');
  const echo = await tcpEcho(nsB, '10.60.0.2', 7070);
  try {
    t.equal(await tcpRoundTrip(nsA, '10.60.0.2', 7070, 'hello-geneve'), 'hello-geneve', 'TCP echo a -> b');
  } finally {
    await echo.stop();
  }
  // The packets really crossed the veth between the hosts: geneve on UDP 6081.
  const stats = JSON.parse((await a.exec('ip', ['-j', '-s', 'link', 'show', 'dev', 'phy-a'])).stdout) as { stats64?: { tx?: { packets?: number } } }[];
  t.ok((stats[0]?.stats64?.tx?.packets ?? 0) > 0, 'traffic left host a over its veth');
});

t.test('(b) a Docker engine in each host namespace', async (t) => {
  if (!hosts) return t.fail('no hosts');
  const engines: DockerEngine[] = [];
  const dirs: PluginDirs[] = [];
  t.teardown(async () => {
    await Promise.all(engines.map((e) => e.stop()));
    for (const d of dirs) await d.remove();
  });
  for (const h of hosts.hosts) dirs.push(await makePluginDirs(`ovnh${h.name}`));
  const started = await timed(t, 'two engines (in parallel)', () =>
    Promise.allSettled(hosts!.hosts.map((h, i) => startDockerEngine({ engine: '20.10', pluginDir: dirs[i]!.pluginDir, netns: h.netns }))),
  );
  for (const r of started) if (r.status === 'fulfilled') engines.push(r.value);
  for (const r of started) if (r.status === 'rejected') throw r.reason;

  for (const [i, h] of hosts.hosts.entries()) {
    const engine = engines[i]!;
    t.comment(`host ${h.name}: engine ${engine.version} up in ${engine.startupMs} ms`);
    t.match((await engine.docker('version', '--format', '{{.Server.Version}}')).stdout, /^20\.10\./, `host ${h.name}: docker version`);
    t.equal(pidNetInode(engine.pid), nsInode(h.netns), `host ${h.name}: dockerd in the host namespace`);
    t.equal(pidNetInode(engine.containerdPid), nsInode(h.netns), `host ${h.name}: containerd in the host namespace`);
    t.match((await run('ip', ['-n', h.netns, '-o', 'link', 'show'])).stdout, /ovngw[0-9a-f]{8}/, `host ${h.name}: docker_gwbridge in the host namespace`);
  }
  t.notMatch((await rootLinks()).join(' '), /ovngw/, 'no gwbridge in the root namespace');
  t.not(engines[0]!.host, engines[1]!.host, 'separate API sockets');

  await Promise.all(engines.map((e) => ensureBusyboxImage(e)));
  for (const [i, h] of hosts.hosts.entries()) {
    await timed(t, `host ${h.name}: docker run --net none`, () => engines[i]!.docker('run', '--rm', '--net', 'none', 'busybox:local', 'true'));
    t.pass(`host ${h.name}: a container ran`);
  }
  await timed(t, 'two engines stop', () => Promise.all(engines.splice(0).map((e) => e.stop())));
});

t.test('(c) stop leaves nothing behind', async (t) => {
  if (!hosts) return t.fail('no hosts');
  const h = hosts;
  hosts = undefined;
  const pids = [h.northdPid, h.nb.pid, h.sb.pid, ...h.hosts.flatMap((x) => Object.values(x.pids))];
  const names = h.hosts.map((x) => x.netns);
  await timed(t, 'TwoHosts.stop', () => h.stop());
  t.same(pids.filter(isAlive), [], 'every daemon gone');
  const leftNs = (await netnsNames()).filter((n) => names.includes(n) || containerNamespaces.includes(n));
  t.same(leftNs, [], 'host and container namespaces gone');
  // Compared by name, not as a whole: other test files may add links meanwhile.
  const after = await rootLinks();
  const added = after.filter((l) => !linksBefore.includes(l));
  if (added.length > 0) t.comment(`links added in the root namespace meanwhile (not ours): ${added.join(' ')}`);
  t.same(after.filter((l) => OURS.test(l)), [], 'none of our links in the root namespace');
  await h.stop();
  t.pass('stop is idempotent');
});
