/**
 * Published ports (`docker run -p/-P`) on a network of ours whose gateway is
 * the host, against the real engines with their own firewall (iptables on):
 * 20.10 in host A of the two-host harness (our IPAM), 26.1 in host B
 * (Docker's IPAM), the driver beside each, a namespace "outside" the host
 * (198.51.100.2 behind a veth of the host). The engine does nothing itself
 * for a remote driver's gateway endpoint: every port here is the driver's
 * (ProgramExternalConnectivity -> DNAT in its chains, host port held).
 *
 * Shows, per engine: a port on 127.0.0.1 reachable from the host only; a
 * port on every address from outside, from the other host (tunnel IP), from
 * the host through 127.0.0.1 and from a container of the same network
 * through the host (hairpin), while an unpublished port and the container's
 * own address stay closed; [::1] (forwarded by the driver) beside 127.0.0.1
 * of the same port, 0.0.0.0 as IPv4 only, no address as IPv6 too; UDP; -P
 * from the host's ephemeral range (read in
 * EndpointOperInfo's ovn.published: `docker port` shows nothing for a remote
 * driver); a second claim of a port refused in Docker's words; no
 * docker_gwbridge; the port following the gateway endpoint across network
 * connect/disconnect and freed by rm; kept through a driver crash and
 * restart and through `docker restart`; `-o ovn.gateway=docker` left to
 * Docker's bridge (a second interface, `docker port` shows the port); nothing
 * of ours left after cleanup.
 *
 * HTTP checks use busybox nc (`printf 'GET …' | nc -w 3 IP PORT`; busybox
 * wget crashes here). This busybox has no UDP nc: the UDP datagram is
 * received by a listener in the container's network namespace (the host's
 * node under nsenter), and sent from outside with bash's /dev/udp.
 */
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { dockerAvailable, ensureBusyboxImage, startDockerEngine, type DockerEngine, type EngineVersion } from '../harness/docker.js';
import { readDriverLog, LEVEL } from '../harness/driver-log.js';
import { startDriverProcess, type DriverProcess } from '../harness/driver-process.js';
import { makePluginDirs, type PluginDirs } from '../harness/plugin-dirs.js';
import { callPlugin } from '../harness/plugin-client.js';
import { createNetns, deleteNetns } from '../harness/netns.js';
import { run, waitFor } from '../harness/process.js';
import { startTwoHosts, type Host, type TwoHosts } from '../harness/two-hosts.js';

const NAME = 'openvswitch';
const HOST_OUT = '198.51.100.1';
const OUTSIDE = '198.51.100.2';
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

let cluster: TwoHosts | undefined;
t.before(async () => {
  cluster = await startTwoHosts();
});
t.teardown(async () => {
  await cluster?.stop();
});

/** An HTTP GET as a shell command (busybox's wget crashes here, in containers and out). */
function httpGet(ip: string, port: number, nc = 'nc'): string {
  return `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | ${nc} -w 3 ${ip} ${port}`;
}

/** What a reachability check saw: whether the command succeeded, and its output (or error). */
interface Reach {
  ok: boolean;
  out: string;
}

function reach(p: Promise<{ stdout: string }>): Promise<Reach> {
  return p.then(
    (r) => ({ ok: true, out: r.stdout }),
    (e: unknown) => ({ ok: false, out: e instanceof Error ? e.message : String(e) }),
  );
}

/** What the driver may change on a host, as text to compare: iptables-save without counters, links, bridge ports. */
async function snapshot(host: Host): Promise<{ iptables: string; links: string; ports: string }> {
  const iptables = (await host.exec('iptables-save', []))
    .stdout.split('\n')
    .filter((l) => !l.startsWith('#'))
    .map((l) => l.replace(/\[\d+:\d+\]/, '[0:0]'))
    .join('\n');
  const links = (await host.exec('ip', ['-o', 'link', 'show'])).stdout
    .split('\n')
    .map((l) => l.split(':')[1]?.trim().split('@')[0])
    .filter(Boolean)
    .sort()
    .join(' ');
  // Geneve tunnel ports come and go with the other chassis, not with us.
  const ports = (await host.vsctl('list-ports', 'br-int'))
    .split('\n')
    .filter((p) => p && !/^ovn-.*-0$/.test(p))
    .sort()
    .join(' ');
  return { iptables, links, ports };
}

/** A UDP receiver in a container's network namespace: every datagram as "ADDR:PORT DATA" lines. */
function udpListener(pid: number, port: number): Promise<{ child: ChildProcess; received: () => string; stop(): Promise<void> }> {
  const script = [
    "const s = require('dgram').createSocket('udp4');",
    "s.on('message', (m, r) => console.log(r.address + ':' + r.port + ' ' + m.toString().trim()));",
    `s.bind(${port}, '0.0.0.0', () => console.log('listening'));`,
  ].join(' ');
  const child = spawn('nsenter', [`--net=/proc/${pid}/ns/net`, '--', process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
  };
  return waitFor(
    () => {
      if (child.exitCode !== null) throw new Error(`UDP listener exited: ${err}`);
      return out.includes('listening') || undefined;
    },
    { what: `a UDP listener on port ${port} in the netns of pid ${pid}`, timeoutMs: 10_000 },
  ).then(
    () => ({ child, received: () => out.split('\n').filter((l) => l && l !== 'listening').join('\n'), stop }),
    async (e: unknown) => {
      await stop();
      throw e;
    },
  );
}

interface Case {
  engine: EngineVersion;
  host: 0 | 1;
  subnet: string;
  /** Our IPAM (--ipam-driver openvswitch) or Docker's. */
  ourIpam: boolean;
  /** Host ports: on 127.0.0.1, on every address, UDP, on 0.0.0.0, through docker_gwbridge. */
  p1: number;
  p2: number;
  p3: number;
  p4: number;
  p5: number;
}

const cases: Case[] = [
  { engine: '20.10', host: 0, subnet: '10.97', ourIpam: true, p1: 18101, p2: 18102, p3: 18103, p4: 18104, p5: 18105 },
  { engine: '26.1', host: 1, subnet: '10.98', ourIpam: false, p1: 18201, p2: 18202, p3: 18203, p4: 18204, p5: 18205 },
];

for (const c of cases) {
  t.test(`engine ${c.engine}: ports published by the driver`, async (t) => {
    if (!(await dockerAvailable(c.engine))) {
      t.fail(`engine ${c.engine} cannot be started on this machine`);
      return;
    }
    const host = cluster!.hosts[c.host];
    const other = cluster!.hosts[1 - c.host]!;
    const sfx = randomBytes(2).toString('hex');
    const net1 = `pub-${sfx}`;
    // Sorts after net1: the engine keeps net1's endpoint the gateway when both are connected.
    const net2 = `pub2-${sfx}`;
    const names = ['c1', 'c2', 'c3', 'c4', 'c5', 'cl', 'c6', 'c7', 'c8', 'c9'].map((n) => `${n}-${sfx}`);
    const [c1, c2, c3, c4, c5, cl, c6, c7, c8, c9] = names as [string, string, string, string, string, string, string, string, string, string];
    // A network whose containers get Docker's gateway (docker_gwbridge), -p included.
    const net3 = `pub3-${sfx}`;

    let outside: string | undefined;
    let dirs: PluginDirs | undefined;
    let engine: DockerEngine | undefined;
    let driver: DriverProcess | undefined;
    let listener: { stop(): Promise<void> } | undefined;
    t.teardown(async () => {
      await listener?.stop().catch(() => undefined);
      if (engine) {
        await engine.docker('rm', '-f', ...names).catch(() => undefined);
        for (const n of [net1, net2, net3]) await engine.docker('network', 'rm', n).catch(() => undefined);
        await engine.stop();
      }
      await driver?.stop();
      await dirs?.remove();
      if (outside) await deleteNetns(outside);
    });

    // The world beyond the host: a namespace behind a veth of the host, which routes to it.
    outside = await createNetns('ovnx');
    const [hostEnd, outEnd] = [`ovp${sfx}h`, `ovp${sfx}o`];
    await run('ip', ['-n', host.netns, 'link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', outEnd, 'netns', outside]);
    await run('ip', ['-n', host.netns, 'addr', 'add', `${HOST_OUT}/24`, 'dev', hostEnd]);
    await run('ip', ['-n', host.netns, 'link', 'set', hostEnd, 'up']);
    await run('ip', ['-n', outside, 'addr', 'add', `${OUTSIDE}/24`, 'dev', outEnd]);
    await run('ip', ['-n', outside, 'link', 'set', outEnd, 'up']);
    // So that outside can try the containers' own addresses through the host (which must refuse).
    await run('ip', ['-n', outside, 'route', 'add', `${c.subnet}.0.0/16`, 'via', HOST_OUT]);

    dirs = await makePluginDirs(NAME);
    engine = await startDockerEngine({ engine: c.engine, pluginDir: dirs.pluginDir, netns: host.netns, firewall: true });
    const image = await ensureBusyboxImage(engine);
    const before = await snapshot(host);
    const logFile = path.join(dirs.dir, 'driver.log');
    driver = await startDriverProcess({
      name: NAME,
      pluginDir: dirs.socketDir,
      nbRemote: cluster!.nbRemote,
      ovsDb: host.ovsRemote,
      logFile,
      netns: host.netns,
      extraArgs: ['--docker-host', engine.host],
    });
    const docker = (...args: string[]) => engine!.docker(...args).then((r) => r.stdout.trim());
    const exec = (container: string, ...cmd: string[]) => docker('exec', container, ...cmd);

    // Where a GET comes from.
    const fromOutside = (ip: string, port: number) => reach(run('ip', ['netns', 'exec', outside!, 'sh', '-c', httpGet(ip, port, 'busybox nc')]));
    const fromHost = (h: Host, ip: string, port: number) => reach(h.exec('sh', ['-c', httpGet(ip, port, 'busybox nc')]));
    const fromContainer = (container: string, ip: string, port: number) => reach(engine!.docker('exec', container, 'sh', '-c', httpGet(ip, port)));
    const reached = (r: Reach, name: string, what: string) => t.match(r.out, new RegExp(`^${name}$`, 'm'), what, { ok: r.ok });
    const refused = (r: Reach, name: string, what: string) => {
      t.notOk(r.ok, what, { out: r.out });
      t.notMatch(r.out, name, `${what}: nothing of ${name} came back`);
    };
    /** A web server whose page names its container; started and answering before this returns. */
    const web = async (name: string, net: string, ...opts: string[]) => {
      const script = 'mkdir -p /www && echo "$SERVES" > /www/index.html && exec httpd -f -p 80 -h /www';
      await docker('run', '-d', '--net', net, '--name', name, '-e', `SERVES=${name}`, ...opts, image, 'sh', '-c', script);
      await waitForHttpd(name);
    };
    const waitForHttpd = (name: string) =>
      waitFor(async () => (await exec(name, 'sh', '-c', httpGet('127.0.0.1', 80))).includes(name) || undefined, {
        what: `httpd in ${name}`,
        timeoutMs: 15_000,
        intervalMs: 200,
      });
    const endpointOf = (container: string, net: string) => docker('inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").EndpointID}}`, container);
    const ipOf = (container: string, net: string) => docker('inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").IPAddress}}`, container);
    /** What the driver says an endpoint publishes (EndpointOperInfo's ovn.published: `docker port` shows nothing for a remote driver). */
    const publishedBy = async (netId: string, endpointId: string): Promise<string[]> => {
      const reply = await callPlugin(driver!.socket, 'NetworkDriver.EndpointOperInfo', { NetworkID: netId, EndpointID: endpointId });
      const value = reply.body.Value as Record<string, unknown> | undefined;
      return (value?.['ovn.published'] as string[] | undefined) ?? [];
    };

    const ipam = c.ourIpam ? ['--ipam-driver', NAME] : [];
    const gw1 = `${c.subnet}.0.1`;
    const netId1 = await docker('network', 'create', '-d', NAME, ...ipam, '--subnet', `${c.subnet}.0.0/24`, net1);
    const netId2 = await docker('network', 'create', '-d', NAME, ...ipam, '--subnet', `${c.subnet}.1.0/24`, net2);

    // 1. On 127.0.0.1: the host's own, not the outside's.
    await web(c1, net1, '-p', `127.0.0.1:${c.p1}:80`);
    reached(await fromHost(host, '127.0.0.1', c.p1), c1, `-p 127.0.0.1:${c.p1}:80: the host reaches 127.0.0.1:${c.p1}`);
    refused(await fromOutside(HOST_OUT, c.p1), c1, `-p 127.0.0.1:${c.p1}:80: outside does not reach ${HOST_OUT}:${c.p1}`);

    // 2. On every address: from outside, from the other host, from the host itself, hairpin; port 81 stays closed.
    const script2 = [
      'mkdir -p /www /priv && echo "$SERVES" > /www/index.html && echo "$SERVES-private" > /priv/index.html',
      'httpd -p 81 -h /priv && exec httpd -f -p 80 -h /www',
    ].join(' && ');
    await docker('run', '-d', '--net', net1, '--name', c2, '-e', `SERVES=${c2}`, '-p', `${c.p2}:80`, image, 'sh', '-c', script2);
    await waitForHttpd(c2);
    await waitFor(async () => (await exec(c2, 'sh', '-c', httpGet('127.0.0.1', 81))).includes('private') || undefined, { what: `httpd on 81 in ${c2}`, timeoutMs: 15_000 });
    const ip2 = await ipOf(c2, net1);
    reached(await fromOutside(HOST_OUT, c.p2), c2, `-p ${c.p2}:80: outside reaches ${HOST_OUT}:${c.p2}`);
    reached(await fromHost(other, host.tunnelIp, c.p2), c2, `-p ${c.p2}:80: the other host reaches ${host.tunnelIp}:${c.p2}`);
    reached(await fromHost(host, '127.0.0.1', c.p2), c2, `-p ${c.p2}:80: the host reaches 127.0.0.1:${c.p2}`);
    await docker('run', '-d', '--net', net1, '--name', cl, image, 'sleep', '3600');
    reached(await fromContainer(cl, HOST_OUT, c.p2), c2, `hairpin: a container of the same network reaches ${HOST_OUT}:${c.p2}`);
    reached(await fromContainer(cl, gw1, c.p2), c2, `hairpin: and its gateway address ${gw1}:${c.p2}`);
    t.match((await fromHost(host, ip2, 81)).out, `${c2}-private`, 'port 81 is open (the host reaches it at the container address)');
    refused(await fromOutside(HOST_OUT, 81), `${c2}-private`, `unpublished port 81: outside does not reach ${HOST_OUT}:81`);
    refused(await fromOutside(ip2, 81), `${c2}-private`, `unpublished port 81: outside does not reach the container's ${ip2}:81 through the host`);
    refused(await fromOutside(ip2, 80), c2, `published port 80: only through the host's port, not at the container's ${ip2}:80`);

    // 2b. By address family: [::1] (forwarded by the driver to the container's IPv4 address) beside c1's
    // 127.0.0.1 of the same port number; 0.0.0.0 is IPv4 only; no address at all (c2) is IPv6 too.
    reached(await fromHost(host, '::1', c.p2), c2, `-p ${c.p2}:80: the host reaches [::1]:${c.p2} too`);
    await web(c8, net1, '-p', `[::1]:${c.p1}:80`, '-p', `0.0.0.0:${c.p4}:80`);
    reached(await fromHost(host, '::1', c.p1), c8, `-p [::1]:${c.p1}:80: the host reaches [::1]:${c.p1}`);
    reached(await fromHost(host, '127.0.0.1', c.p1), c1, `while 127.0.0.1:${c.p1} still reaches ${c1}`);
    reached(await fromOutside(HOST_OUT, c.p4), c8, `-p 0.0.0.0:${c.p4}:80: outside reaches ${HOST_OUT}:${c.p4}`);
    refused(await fromHost(host, '::1', c.p4), c8, `-p 0.0.0.0:${c.p4}:80: not on [::1]:${c.p4}`);
    t.same(
      (await publishedBy(netId1, await endpointOf(c8, net1))).sort(),
      [`0.0.0.0:${c.p4}->80/tcp`, `[::1]:${c.p1}->80/tcp`],
      `EndpointOperInfo of ${c8} lists both, IPv6 in brackets`,
    );
    await docker('rm', '-f', c8);
    refused(await fromHost(host, '::1', c.p1), c8, `${c8} removed: [::1]:${c.p1} is closed again`);

    // 3. UDP.
    await docker('run', '-d', '--net', net1, '--name', c3, '-p', `${c.p3}:5353/udp`, image, 'sleep', '3600');
    const pid3 = Number(await docker('inspect', '-f', '{{.State.Pid}}', c3));
    const udp = await udpListener(pid3, 5353);
    listener = udp;
    const got = await waitFor(
      async () => {
        await run('ip', ['netns', 'exec', outside, 'bash', '-c', `echo x > /dev/udp/${HOST_OUT}/${c.p3}`]);
        return / x$/m.test(udp.received()) ? udp.received() : undefined;
      },
      { what: `a datagram sent to ${HOST_OUT}:${c.p3}/udp in ${c3}`, timeoutMs: 10_000, intervalMs: 500 },
    ).catch((e: Error) => e.message);
    t.match(got, new RegExp(`^${OUTSIDE.replace(/\./g, '\\.')}:\\d+ x$`, 'm'), `-p ${c.p3}:5353/udp: a datagram from outside arrives in the container, from the outside's own address`);
    await udp.stop();
    listener = undefined;

    // 4. -P: a port of the host's ephemeral range, known from the driver.
    await web(c4, net1, '-P', '--expose', '80');
    const [low, high] = (await host.exec('cat', ['/proc/sys/net/ipv4/ip_local_port_range'])).stdout.trim().split(/\s+/).map(Number) as [number, number];
    const published4 = await publishedBy(netId1, await endpointOf(c4, net1));
    t.equal(published4.length, 1, `-P --expose 80: one port published (${published4.join(', ')})`);
    const p4 = Number(/^0\.0\.0\.0:(\d+)->80\/tcp$/.exec(published4[0] ?? '')?.[1] ?? NaN);
    t.ok(p4 >= low && p4 <= high, `-P: host port ${p4} is in the host's ephemeral range ${low}-${high}`);
    reached(await fromOutside(HOST_OUT, p4), c4, `-P: outside reaches ${HOST_OUT}:${p4}`);
    t.same(await publishedBy(netId1, await endpointOf(c2, net1)), [`0.0.0.0:${c.p2}->80/tcp`], `EndpointOperInfo of ${c2} lists ${c.p2}`);
    t.equal(await docker('port', c2), '', '`docker port` shows nothing for a remote driver (as measured)');

    // 5. The same port asked again.
    const conflict = await reach(engine.docker('run', '-d', '--net', net1, '--name', c5, '-p', `${c.p2}:80`, image, 'sleep', '3600'));
    t.notOk(conflict.ok, `a second -p ${c.p2}:80: docker run fails`);
    t.match(conflict.out, new RegExp(`${c.p2}.*port is already allocated`), 'its error names the port, in Docker\'s words');
    await docker('rm', '-f', c5);
    reached(await fromOutside(HOST_OUT, c.p2), c2, `after the refusal, ${c.p2} still goes to ${c2}`);

    // 6. No docker_gwbridge: one interface in the container, no such link on the host.
    const links2 = (await exec(c2, 'ip', '-o', 'link')).split('\n').map((l) => l.split(':')[1]?.trim().split('@')[0]);
    t.same(links2, ['lo', 'eth0'], `${c2} has lo and eth0 only`);
    t.match(await exec(c2, 'ip', 'route'), new RegExp(`^default via ${gw1} dev eth0`, 'm'), `${c2}'s default route is the host through OVN`);
    t.notOk((await reach(host.exec('ip', ['link', 'show', 'docker_gwbridge']))).ok, 'no docker_gwbridge link on the host');
    // The harness makes the docker_gwbridge network up front (under a bridge name of its own): nothing joined it.
    t.equal(await docker('network', 'inspect', '-f', '{{json .Containers}}', 'docker_gwbridge'), '{}', 'no container on the docker_gwbridge network');

    // 7. The gateway endpoint moves: connect net2, disconnect net1; rm frees the port.
    await docker('network', 'connect', net2, c2);
    reached(await fromOutside(HOST_OUT, c.p2), c2, `connected to ${net2} too: ${c.p2} still reaches ${c2}`);
    await docker('network', 'disconnect', net1, c2);
    t.match(await exec(c2, 'ip', 'route'), new RegExp(`^default via ${c.subnet}\\.1\\.1 `, 'm'), `disconnected from ${net1}: the gateway is ${net2}'s`);
    reached(await fromOutside(HOST_OUT, c.p2), c2, `disconnected from ${net1}: ${c.p2} reaches ${c2} through ${net2}`);
    t.same(await publishedBy(netId2, await endpointOf(c2, net2)), [`0.0.0.0:${c.p2}->80/tcp`], `${net2}'s endpoint publishes ${c.p2} now`);
    await docker('rm', '-f', c2);
    await web(c6, net1, '-p', `${c.p2}:80`);
    reached(await fromOutside(HOST_OUT, c.p2), c6, `${c2} removed: a new container gets ${c.p2} and outside reaches it`);

    // 8. The driver crashes and starts again: the port stays published; so through docker restart.
    await driver.kill();
    reached(await fromOutside(HOST_OUT, c.p2), c6, `driver down: ${c.p2} still reaches ${c6}`);
    await driver.start();
    reached(await fromOutside(HOST_OUT, c.p2), c6, `driver restarted: ${c.p2} still reaches ${c6}`);
    t.same(await publishedBy(netId1, await endpointOf(c6, net1)), [`0.0.0.0:${c.p2}->80/tcp`], `driver restarted: it knows ${c6} publishes ${c.p2}`);
    const again = await reach(engine.docker('run', '-d', '--net', net1, '--name', c7, '-p', `${c.p2}:80`, image, 'sleep', '3600'));
    t.notOk(again.ok, `driver restarted: a second -p ${c.p2}:80 still fails`);
    t.match(again.out, new RegExp(`${c.p2}.*port is already allocated`), 'driver restarted: its error names the port');
    await docker('rm', '-f', c7);
    await docker('restart', '-t', '1', c6);
    await waitForHttpd(c6);
    reached(await fromOutside(HOST_OUT, c.p2), c6, `docker restart: ${c.p2} reaches ${c6} again`);
    t.same(await publishedBy(netId1, await endpointOf(c6, net1)), [`0.0.0.0:${c.p2}->80/tcp`], 'docker restart: its new endpoint publishes it');
    reached(await fromHost(host, '127.0.0.1', c.p1), c1, `and 127.0.0.1:${c.p1} still reaches ${c1}`);

    // 9. -o ovn.gateway=docker: Docker's bridge publishes, as without the driver's publishing.
    const netId3 = await docker('network', 'create', '-d', NAME, ...ipam, '--subnet', `${c.subnet}.2.0/24`, '-o', 'ovn.gateway=docker', net3);
    await web(c9, net3, '-p', `${c.p5}:80`);
    t.same((await exec(c9, 'ip', '-o', 'link')).split('\n').map((l) => l.split(':')[1]?.trim().split('@')[0]), ['lo', 'eth0', 'eth1'], `${c9} has a second interface, on docker_gwbridge`);
    t.match(await docker('port', c9), new RegExp(`^80/tcp -> 0\\.0\\.0\\.0:${c.p5}$`, 'm'), '`docker port` shows the port: the engine published it');
    reached(await fromOutside(HOST_OUT, c.p5), c9, `-o ovn.gateway=docker: outside reaches ${HOST_OUT}:${c.p5}`);
    t.same(await publishedBy(netId3, await endpointOf(c9, net3)), [], 'the driver publishes nothing for it');
    t.notMatch((await host.exec('iptables-save', ['-t', 'nat'])).stdout, new RegExp(`ovn-docker-driver.*--dport ${c.p5} `), 'and has no rule for its port');
    await docker('rm', '-f', c9);

    // 10. Nothing of ours left: containers and networks go, the driver stops, cleanup removes the rest.
    await docker('rm', '-f', c1, c3, c4, c6, cl);
    await docker('network', 'rm', net1, net2, net3);
    await driver.stop();
    const errors = (await readDriverLog(logFile)).filter((e) => (e.level ?? 0) >= LEVEL.error);
    t.same(errors.map((e) => e.msg), [], 'the driver logged no error');
    const cleanup = await run('ip', [
      'netns', 'exec', host.netns, process.execPath, '--import', 'tsx', path.join(ROOT, 'src/cli/main.ts'), 'cleanup',
      '--name', NAME, '--plugin-dir', dirs.socketDir, '--ovs-db', host.ovsRemote, '--ovn-nb', cluster!.nbRemote, '--nb',
    ], { timeoutMs: 60_000 });
    t.match(cleanup.stdout, /cleanup done/, 'cleanup ran');
    const after = await snapshot(host);
    t.notMatch(after.iptables, /OVN-DOCKER|ovn-docker-driver/, 'no chain or rule of ours left');
    t.notMatch(after.iptables, new RegExp(`DNAT --to-destination ${c.subnet.replace('.', '\\.')}\\.`), 'no DNAT to our containers left');
    t.equal(after.iptables, before.iptables, 'iptables-save as before the driver ran');
    t.equal(after.links, before.links, 'ip link as before the driver ran');
    t.equal(after.ports, before.ports, 'br-int ports as before the driver ran');
  });
}
