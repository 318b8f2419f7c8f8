/**
 * The host as its containers' gateway, against a real engine that writes its
 * own firewall (iptables on, as a system engine runs): each engine runs in a
 * host namespace of the two-host harness (20.10 on A, 26.1 on B), with the
 * driver beside it and a namespace "outside" the host (198.51.100.2 behind a
 * veth of the host). Shows: egress beyond the host through OVN and the
 * gateway port (the container resolves the gateway to the gateway port's
 * MAC), and through docker_gwbridge with -o ovn.gateway=docker; Docker's
 * isolation kept (an unpublished port of a bridge container is not
 * reachable, a published one is); rules still in force after dockerd
 * restarts; and `cleanup` leaving the firewall, links and bridge as they
 * were before the driver ran.
 */
import t from 'tap';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { dockerAvailable, ensureBusyboxImage, startDockerEngine, type DockerEngine, type EngineVersion } from '../harness/docker.js';
import { startDriverProcess, type DriverProcess } from '../harness/driver-process.js';
import { makePluginDirs, type PluginDirs } from '../harness/plugin-dirs.js';
import { createNetns, deleteNetns, tcpEcho } from '../harness/netns.js';
import { run, waitFor } from '../harness/process.js';
import { startTwoHosts, type Host, type TwoHosts } from '../harness/two-hosts.js';
import { macFromIPv4 } from '../../src/net/mac.js';

const NAME = 'openvswitch';
const OUTSIDE = '198.51.100.2';
const ECHO_PORT = 7777;
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

/**
 * `forwarding`: whether the host forwarded before dockerd started. Docker 20.10-27 set FORWARD's
 * policy to DROP only when they turn forwarding on themselves, and rely on it for unpublished ports.
 */
const cases: { engine: EngineVersion; host: 0 | 1; subnet: string; restart: boolean; forwarding: 0 | 1 }[] = [
  { engine: '20.10', host: 0, subnet: '10.93', restart: true, forwarding: 1 },
  { engine: '26.1', host: 1, subnet: '10.94', restart: false, forwarding: 0 },
];

for (const c of cases) {
  t.test(`engine ${c.engine}: egress through the host, Docker's isolation kept, nothing left after cleanup`, async (t) => {
    if (!(await dockerAvailable(c.engine))) {
      t.fail(`engine ${c.engine} cannot be started on this machine`);
      return;
    }
    const host = cluster!.hosts[c.host];
    const sfx = randomBytes(2).toString('hex');
    // The world beyond the host: a namespace behind a veth of the host, which routes to it.
    const outside = await createNetns('ovnx');
    t.teardown(() => deleteNetns(outside));
    const [hostEnd, outEnd] = [`ovx${sfx}h`, `ovx${sfx}o`];
    await run('ip', ['-n', host.netns, 'link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', outEnd, 'netns', outside]);
    await run('ip', ['-n', host.netns, 'addr', 'add', '198.51.100.1/24', 'dev', hostEnd]);
    await run('ip', ['-n', host.netns, 'link', 'set', hostEnd, 'up']);
    await run('ip', ['-n', outside, 'addr', 'add', `${OUTSIDE}/24`, 'dev', outEnd]);
    await run('ip', ['-n', outside, 'link', 'set', outEnd, 'up']);
    const echo = await tcpEcho(outside, OUTSIDE, ECHO_PORT);
    t.teardown(() => echo.stop());

    let dirs: PluginDirs | undefined;
    let engine: DockerEngine | undefined;
    let driver: DriverProcess | undefined;
    t.teardown(async () => {
      if (engine) {
        const ids = (await engine.docker('ps', '-aq').catch(() => ({ stdout: '' }))).stdout.split(/\s+/).filter(Boolean);
        if (ids.length) await engine.docker('rm', '-f', ...ids).catch(() => undefined);
        for (const n of ['def', 'dk']) await engine.docker('network', 'rm', `${n}-${sfx}`).catch(() => undefined);
        await engine.stop();
      }
      await driver?.stop();
      await dirs?.remove();
    });
    dirs = await makePluginDirs(NAME);
    // A new namespace copies this from the machine's own (net.core.devconf_inherit_init_net=0): set it.
    await run('ip', ['netns', 'exec', host.netns, 'sysctl', '-qw', `net.ipv4.ip_forward=${c.forwarding}`]);
    engine = await startDockerEngine({ engine: c.engine, pluginDir: dirs.pluginDir, netns: host.netns, bridge: true, firewall: true });
    const image = await ensureBusyboxImage(engine);
    const policy = (await host.exec('iptables', ['-S', 'FORWARD'])).stdout.split('\n')[0];
    t.equal(policy, c.forwarding ? '-P FORWARD ACCEPT' : '-P FORWARD DROP', `dockerd left FORWARD's policy ${c.forwarding ? 'ACCEPT' : 'DROP'}`);
    const before = await snapshot(host);
    const driverArgs = {
      name: NAME,
      pluginDir: dirs.socketDir,
      nbRemote: cluster!.nbRemote,
      ovsDb: host.ovsRemote,
      logFile: path.join(dirs.dir, 'driver.log'),
      netns: host.netns,
    };
    driver = await startDriverProcess({ ...driverArgs, extraArgs: ['--docker-host', engine.host] });
    const docker = (...args: string[]) => engine!.docker(...args).then((r) => r.stdout.trim());
    const exec = (container: string, ...cmd: string[]) => docker('exec', container, ...cmd);
    /** Whether `cmd` in the container succeeds. */
    const succeeds = (container: string, ...cmd: string[]) => exec(container, ...cmd).then(() => true, () => false);

    const gateway = `${c.subnet}.0.1`;
    await docker('network', 'create', '-d', NAME, '--subnet', `${c.subnet}.0.0/24`, `def-${sfx}`);
    await docker('network', 'create', '-d', NAME, '--subnet', `${c.subnet}.1.0/24`, '-o', 'ovn.gateway=docker', `dk-${sfx}`);
    await docker('run', '-d', '--net', `def-${sfx}`, '--name', `o1-${sfx}`, image, 'sleep', '3600');
    await docker('run', '-d', '--net', `dk-${sfx}`, '--name', `o2-${sfx}`, image, 'sleep', '3600');
    // A container on Docker's own bridge network: port 80 published as 18080, port 81 not.
    const web = [
      'mkdir -p /pub /priv && echo published > /pub/index.html && echo private > /priv/index.html',
      'httpd -p 80 -h /pub && exec httpd -f -p 81 -h /priv',
    ].join(' && ');
    await docker('run', '-d', '--net', 'bridge', '-p', '18080:80', '--name', `web-${sfx}`, image, 'sh', '-c', web);
    const webIp = await docker('inspect', '-f', '{{.NetworkSettings.IPAddress}}', `web-${sfx}`);

    const checkEgressAndIsolation = async (when: string) => {
      const o1Ip = await docker('inspect', '-f', `{{(index .NetworkSettings.Networks "def-${sfx}").IPAddress}}`, `o1-${sfx}`);
      t.match(await exec(`o1-${sfx}`, 'ping', '-c1', '-W2', OUTSIDE), /1 packets received/, `${when}: ping beyond the host through OVN`);
      t.equal(await exec(`o1-${sfx}`, 'sh', '-c', `echo hello | nc -w 3 ${OUTSIDE} ${ECHO_PORT}`), 'hello', `${when}: TCP beyond the host`);
      t.match(
        await exec(`o1-${sfx}`, 'ip', 'neigh', 'show', gateway),
        macFromIPv4(gateway),
        `${when}: the gateway resolves to the gateway port, not to the host end of the veth`,
      );
      t.match(await exec(`o2-${sfx}`, 'ping', '-c1', '-W2', OUTSIDE), /1 packets received/, `${when}: ovn.gateway=docker reaches beyond the host too`);
      // The port is open: the host itself reaches it.
      t.match((await host.exec('sh', ['-c', httpGet(webIp, 81, 'busybox nc')])).stdout, 'private', `${when}: the host reaches the unpublished port`);
      t.notMatch(await exec(`o1-${sfx}`, 'sh', '-c', `${httpGet(webIp, 81)}; true`), 'private', `${when}: an OVN container does not`);
      t.match(await exec(`o1-${sfx}`, 'sh', '-c', httpGet(gateway, 18080)), 'published', `${when}: but reaches the published one through the host`);
      // Nor the other way round, as between two of Docker's bridge networks.
      t.match((await host.exec('ping', ['-c1', '-W2', o1Ip])).stdout, / 1 received/, `${when}: the host reaches the OVN container`);
      t.notOk(await succeeds(`web-${sfx}`, 'ping', '-c1', '-W2', o1Ip), `${when}: a bridge container does not`);
    };
    await checkEgressAndIsolation('started');
    t.match(await exec(`o2-${sfx}`, 'ip', 'route'), /^default via (?!10\.9)/m, 'ovn.gateway=docker: default route through docker_gwbridge');

    if (c.restart) {
      await engine.restartDaemon();
      await docker('start', `web-${sfx}`, `o1-${sfx}`, `o2-${sfx}`);
      // dockerd put its rules back at the top of FORWARD; the driver puts its jump back behind DOCKER-USER by itself.
      const forward = await waitFor(
        async () => {
          const rules = (await host.exec('iptables', ['-S', 'FORWARD'])).stdout.split('\n').filter((l) => l.startsWith('-A'));
          const ours = rules.filter((l) => l.endsWith('-j OVN-DOCKER-FORWARD')).length;
          return rules[0] === '-A FORWARD -j DOCKER-USER' && rules[1]?.endsWith('-j OVN-DOCKER-FORWARD') && ours === 1 ? rules : undefined;
        },
        { timeoutMs: 15_000, what: "the driver's jump back right after DOCKER-USER's" },
      );
      t.same(
        forward.slice(0, 2),
        ['-A FORWARD -j DOCKER-USER', '-A FORWARD -m comment --comment ovn-docker-driver -j OVN-DOCKER-FORWARD'],
        'after a dockerd restart: our jump, once, right behind DOCKER-USER',
      );
      await checkEgressAndIsolation('after a dockerd restart');
    }

    // Leave no trace: containers and networks go, the driver stops, cleanup removes the rest.
    await docker('rm', '-f', `o1-${sfx}`, `o2-${sfx}`, `web-${sfx}`);
    await docker('network', 'rm', `def-${sfx}`, `dk-${sfx}`);
    await driver.stop();
    const cleanup = await run('ip', [
      'netns', 'exec', host.netns, process.execPath, '--import', 'tsx', path.join(ROOT, 'src/cli/main.ts'), 'cleanup',
      '--name', NAME, '--plugin-dir', dirs.socketDir, '--ovs-db', host.ovsRemote, '--ovn-nb', cluster!.nbRemote, '--nb',
    ], { timeoutMs: 60_000 });
    t.match(cleanup.stdout, /cleanup done/, 'cleanup ran');
    const after = await snapshot(host);
    t.equal(after.links, before.links, 'ip link as before the driver ran');
    t.equal(after.ports, before.ports, 'br-int ports as before the driver ran');
    t.notMatch(after.iptables, /OVN-DOCKER|ovn-docker-driver/, 'no chain or rule of ours left');
    // A dockerd restart reorders Docker's own rules; without one, everything is as it was.
    if (!c.restart) t.equal(after.iptables, before.iptables, 'iptables-save as before the driver ran');
  });
}
