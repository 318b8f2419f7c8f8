/**
 * End to end with a real Docker engine: Debian 12's 20.10 and Debian 13's
 * 26.1 (they differ in when the Join interface moves into the container).
 * Real OVN (single chassis), the driver as its own process, busybox
 * containers. Each engine has a private plugin directory, so it only finds
 * this test's driver.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { readFile } from 'node:fs/promises';
import { dockerAvailable, ensureBusyboxImage, startDockerEngine, type DockerEngine } from '../harness/docker.js';
import { startDriverProcess, type DriverProcess } from '../harness/driver-process.js';
import { startOvnStack, type OvnStack } from '../harness/ovn-stack.js';
import { namesLeftToDocker, recordedNames } from '../harness/dns-names.js';
import { makePluginDirs } from '../harness/plugin-dirs.js';
import { run, waitFor } from '../harness/process.js';

const ENGINES = ['20.10', '26.1'] as const;

for (const version of ENGINES) {
  t.test(`Docker engine ${version}`, async (t) => {
    if (!(await dockerAvailable(version))) {
      t.fail(`engine ${version} cannot be started on this machine`);
      return;
    }
    const sfx = randomBytes(3).toString('hex');
    const name = `ovn${sfx}`;
    const dirs = await makePluginDirs(name);

    let stack: OvnStack | undefined;
    let engine: DockerEngine | undefined;
    let driver: DriverProcess | undefined;
    t.teardown(async () => {
      if (engine) {
        await engine.docker('rm', '-f', ...['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'p'].map((c) => `${c}-${sfx}`)).catch(() => undefined);
        for (const net of ['n1', 'n2', 'n3', 'n4']) await engine.docker('network', 'rm', `${net}-${sfx}`).catch(() => undefined);
        await engine.stop();
      }
      await driver?.stop();
      await stack?.stop();
      await dirs.remove();
    });

    stack = await startOvnStack();
    // The engine first: the driver reads container names from its API (for OVN DNS).
    engine = await startDockerEngine({ engine: version, pluginDir: dirs.pluginDir });
    const logFile = path.join(dirs.dir, 'driver.log');
    driver = await startDriverProcess({
      name,
      pluginDir: dirs.socketDir,
      nbRemote: stack.nbRemote,
      ovsDb: stack.ovsRemote,
      logFile,
      // The root namespace's firewall is the machine's: this test does not touch it.
      // Debug: warm ports' creation and removal are logged, for the leftover check's report, and names left to Docker.
      extraArgs: ['--docker-host', engine.host, '--masquerade', 'false', '--log-level', 'debug'],
    });
    const image = await ensureBusyboxImage(engine);
    const docker = (...args: string[]) => engine!.docker(...args).then((r) => r.stdout.trim());
    const exec = (container: string, ...cmd: string[]) => docker('exec', container, ...cmd);
    const ipOf = async (container: string, net: string) =>
      docker('inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").IPAddress}}`, container);

    const n1 = `n1-${sfx}`;
    const n2 = `n2-${sfx}`;
    const id1 = await docker('network', 'create', '-d', name, '--subnet', '10.81.0.0/24', n1);
    t.match(await stack.nbctl('--bare', '--columns=name', 'list', 'Logical_Switch'), id1, 'network is a logical switch');

    for (const c of ['a', 'b']) {
      await docker('run', '-d', '--net', n1, '--name', `${c}-${sfx}`, image, 'sleep', '3600');
    }
    const ipB = await ipOf(`b-${sfx}`, n1);
    t.match(ipB, /^10\.81\.0\.\d+$/);
    const mtu = await exec(`a-${sfx}`, 'cat', '/sys/class/net/eth0/mtu');
    t.equal(mtu, '1442', 'container MTU leaves room for geneve');
    t.match(await exec(`a-${sfx}`, 'ping', '-c1', '-W2', ipB), /1 packets received/, 'a pings b by IP');
    t.match(await exec(`a-${sfx}`, 'ping', '-c1', '-W2', `b-${sfx}`), /1 packets received/, 'a pings b by name');

    // Names: Docker's embedded DNS answers this engine's containers. On a switch of one host the driver
    // writes none to OVN (only once another host joins it: two-hosts.test.ts); it says so in its debug log.
    const resolve = (container: string, query: string, ...server: string[]) =>
      waitFor(() => exec(container, 'nslookup', query, ...server).catch(() => undefined), { timeoutMs: 20_000, what: `${query} resolved` });
    t.match(await resolve(`a-${sfx}`, `b-${sfx}`), new RegExp(`Address:? *${ipB.replace(/\./g, '\\.')}`), "a resolves b through Docker's DNS");
    // Names wait up to 8 s for their batch while starts keep coming (dns-batch-spacing.ts).
    await namesLeftToDocker(logFile, `b-${sfx}`);
    t.same(await recordedNames(stack), [], 'no names on the ports');
    t.equal((await stack.nbctl('--bare', '--columns=dns_records', 'find', 'Logical_Switch', `name=${id1}`)).trim(), '', 'no DNS row on a switch of one host');

    // TCP, not only ping: the userspace datapath needs transmit checksum offload off. The listener's
    // stdin stays open: at EOF busybox nc half-closes at once, and the client, seeing that, quits
    // before it sends (1 in 30 on loopback; the counters of a failure here showed just that).
    await docker('exec', '-d', `b-${sfx}`, 'sh', '-c', 'sleep 600 | nc -l -p 7070 > /tmp/got');
    await waitFor(async () => (await exec(`b-${sfx}`, 'netstat', '-ltn')).includes(':7070') || undefined, {
      timeoutMs: 10_000,
      what: 'nc listening in b',
    });
    await exec(`a-${sfx}`, 'sh', '-c', `echo hello-over-ovn | nc -w 5 ${ipB} 7070`);
    await waitFor(async () => (await exec(`b-${sfx}`, 'cat', '/tmp/got')).includes('hello-over-ovn') || undefined, {
      timeoutMs: 10_000,
      what: 'TCP payload in b',
    }).catch(async (err: unknown) => {
      // Seen once in a CI run, never reproduced: say what TCP saw on both sides (checksum errors, connections).
      const seen = async (c: string) => (await exec(`${c}-${sfx}`, 'sh', '-c', 'grep ^Tcp: /proc/net/snmp; netstat -tn').catch((e: Error) => e.message));
      throw new Error(`${(err as Error).message}\na:\n${await seen('a')}\nb:\n${await seen('b')}`);
    });
    t.pass('TCP a -> b');

    // A second network, isolated from the first; connect and disconnect a running container.
    const id2 = await docker('network', 'create', '-d', name, '--subnet', '10.82.0.0/24', n2);
    await docker('run', '-d', '--net', n2, '--name', `c-${sfx}`, image, 'sleep', '3600');
    const ipC = await ipOf(`c-${sfx}`, n2);
    await t.rejects(exec(`c-${sfx}`, 'ping', '-c1', '-W1', ipB), 'c on n2 cannot reach b on n1');
    await docker('network', 'connect', n2, `a-${sfx}`);
    const ipA2 = await ipOf(`a-${sfx}`, n2);
    t.match(ipA2, /^10\.82\.0\.\d+$/, 'a got an address on n2');
    t.match(await exec(`c-${sfx}`, 'ping', '-c1', '-W2', ipA2), /1 packets received/, 'c reaches a over n2 after connect');
    // An endpoint's port carries its network's id, or is a warm port the switch's port set records it on.
    const endpointsOnN2 = async () => {
      const own = (await stack!.nbctl('--bare', '--columns=name', 'find', 'Logical_Switch_Port', `external_ids:docker\\:network-id=${id2}`))
        .split(/\s+/)
        .filter(Boolean).length;
      const sets = await stack!.nbctl('--bare', '--columns=external_ids', 'find', 'Address_Set', `name=docker_ports_${id2}`);
      return own + (sets.match(new RegExp(`ep [0-9a-f]{64} [0-9a-f]{64} ${id2}`, 'g')) ?? []).length;
    };
    t.equal(await endpointsOnN2(), 2, 'two endpoints on n2');
    await docker('network', 'disconnect', n2, `a-${sfx}`);
    t.equal(await endpointsOnN2(), 1, 'disconnect removed the endpoint');
    await t.rejects(exec(`c-${sfx}`, 'ping', '-c1', '-W1', ipA2), 'a is gone from n2');

    // The driver crashes: traffic keeps flowing; a restarted driver serves new containers.
    await driver.kill();
    t.match(await exec(`a-${sfx}`, 'ping', '-c1', '-W2', ipB), /1 packets received/, 'traffic flows with the driver down');
    await driver.start();
    await docker('run', '-d', '--net', n1, '--name', `d-${sfx}`, image, 'sleep', '3600');
    t.match(await exec(`d-${sfx}`, 'ping', '-c1', '-W2', ipB), /1 packets received/, 'new container after restart reaches b');
    t.match(await exec(`a-${sfx}`, 'ping', '-c1', '-W2', ipC).catch(() => 'unreachable'), /unreachable|0 packets/, 'still isolated');

    // Egress: by default this host is the network's gateway through OVN, so a container has one interface.
    const ipA = await ipOf(`a-${sfx}`, n1);
    t.match(await exec(`a-${sfx}`, 'ip', 'route'), /^default via 10\.81\.0\.1 dev eth0/m, 'default route through OVN to the host');
    t.notMatch(await exec(`a-${sfx}`, 'ip', '-o', 'link'), /eth1/, 'no docker_gwbridge interface');
    t.match(await exec(`a-${sfx}`, 'ping', '-c1', '-W2', '10.81.0.1'), /1 packets received/, 'the gateway answers');
    t.match((await run('ping', ['-c1', '-W2', ipA])).stdout, /1 received/, 'the host reaches the container through its gateway port');
    // A container that publishes a port keeps docker_gwbridge, through which Docker publishes it.
    const hostPort = 20000 + Math.floor(Math.random() * 10000);
    await docker('run', '-d', '--net', n1, '-p', `127.0.0.1:${hostPort}:8080`, '--name', `p-${sfx}`, image,
      'sh', '-c', 'echo published-through-gwbridge > /tmp/index.html && exec httpd -f -p 8080 -h /tmp');
    t.match(await exec(`p-${sfx}`, 'ip', '-o', 'link'), /eth1/, 'a container publishing ports has a docker_gwbridge interface');
    const page = await waitFor(
      async () => {
        const r = await fetch(`http://127.0.0.1:${hostPort}/`).catch(() => undefined);
        return r?.ok ? r.text() : undefined;
      },
      { timeoutMs: 10_000, what: 'the published port to answer' },
    );
    t.match(page, /published-through-gwbridge/, '-p publishes the port');
    t.match(await exec(`p-${sfx}`, 'ping', '-c1', '-W2', ipB), /1 packets received/, 'and the container is on the OVN network too');
    await docker('rm', '-f', `p-${sfx}`);

    // Docker's IPAM gives each container the lowest free address: the driver keeps ports ready there (a port
    // set per switch records them), and a finished container's port serves Docker's next one.
    const keptWarm = async () =>
      (await readFile(path.join(dirs.dir, 'driver.log'), 'utf8')).split('\n').filter((l) => l.includes('its port is kept warm')).length;
    const portSet = async () => stack!.nbctl('--columns=external_ids', 'find', 'Address_Set', `name=docker_ports_${id1}`);
    await waitFor(async () => ((await portSet()).match(/"warm [0-9a-f]{64}"/g) ?? []).length >= 2 || undefined, {
      timeoutMs: 20_000,
      what: 'two warm ports on n1',
    });
    const keptBefore = await keptWarm();
    const short = await docker('run', '-d', '--net', n1, '--name', `g-${sfx}`, image, 'sleep', '3600');
    const endpointG = await docker('inspect', '-f', `{{(index .NetworkSettings.Networks "${n1}").EndpointID}}`, short);
    t.match(await portSet(), new RegExp(`"ep [0-9a-f]{64} ${endpointG} ${id1}"`), 'a container on a network of Docker\'s IPAM started on a warm port');
    t.match(await exec(`g-${sfx}`, 'ping', '-c1', '-W2', ipB), /1 packets received/, 'and reaches the others');
    await docker('rm', '-f', `g-${sfx}`);
    for (let i = 0; i < 3; i++) t.match(await docker('run', '--rm', '--net', n1, image, 'cat', '/sys/class/net/eth0/address'), /^0a:58:0a:51:00:/);
    const keptOnN1 = (await keptWarm()) - keptBefore;
    t.ok(keptOnN1 >= 1, `a finished container's port served the next one (${keptOnN1} of 4 kept)`);

    // -o ovn.gateway=docker: Docker's docker_gwbridge for every container, as with its overlay driver.
    const n4 = `n4-${sfx}`;
    const id4 = await docker('network', 'create', '-d', name, '--subnet', '10.87.0.0/24', '-o', 'ovn.gateway=docker', n4);
    await docker('run', '-d', '--net', n4, '--name', `h-${sfx}`, image, 'sleep', '3600');
    t.match(await exec(`h-${sfx}`, 'ip', '-o', 'link'), /eth1/, 'docker_gwbridge interface');
    t.notMatch(await exec(`h-${sfx}`, 'ip', 'route'), /^default via 10\.87\.0\.1/m, 'default route not through OVN');
    const gatewayPorts = async () => (await stack!.vsctl('list-ports', 'br-int')).match(/\bovg[0-9a-f]{12}\b/g) ?? [];
    t.equal((await gatewayPorts()).length, 2, 'gateway ports of n1 and n2 only');
    await docker('rm', '-f', `h-${sfx}`);
    await docker('network', 'rm', n4);
    t.notMatch(await stack.nbctl('--bare', '--columns=name', 'list', 'Logical_Switch'), id4);

    // Our IPAM: the pool and its addresses live in OVN NB.
    const n3 = `n3-${sfx}`;
    await docker('network', 'create', '-d', name, '--ipam-driver', name, '--subnet', '10.86.0.0/24', '--aux-address', 'x=10.86.0.250', n3);
    t.match(await stack.nbctl('--bare', '--columns=name', 'list', 'Address_Set'), 'docker_pool_10.86.0.0_24', 'pool in NB');
    await docker('run', '-d', '--net', n3, '--ip', '10.86.0.50', '--name', `e-${sfx}`, image, 'sleep', '3600');
    // The driver keeps two warm ports per network of its IPAM: plugged, bound, up.
    const warmUp = async () =>
      (await stack!.nbctl('--bare', '--columns=name', 'find', 'Logical_Switch_Port', `external_ids:docker\\:warm=${stack!.systemId}`,
        'external_ids:docker\\:pool-v4=docker_pool_10.86.0.0_24', 'up=true'))
        .split(/\s+/)
        .filter(Boolean);
    await waitFor(async () => (await warmUp()).length === 2 || undefined, { timeoutMs: 20_000, what: 'two warm ports up' });
    await docker('run', '-d', '--net', n3, '--name', `f-${sfx}`, image, 'sleep', '3600');
    t.equal(await ipOf(`e-${sfx}`, n3), '10.86.0.50', '--ip honored');
    t.equal(await ipOf(`f-${sfx}`, n3), '10.86.0.2', 'first free address after the gateway');
    const endpointF = (await docker('inspect', '-f', `{{(index .NetworkSettings.Networks "${n3}").EndpointID}}`, `f-${sfx}`)).trim();
    // An endpoint on a warm port is recorded in its pool, "ep <port> <endpoint> <network>" (see src/ovn/warm-ports.ts).
    const pools = await stack.nbctl('--bare', '--columns=external_ids', 'list', 'Address_Set');
    const portF = new RegExp(`ep ([0-9a-f]{64}) ${endpointF} `).exec(pools)?.[1] ?? '';
    t.match(portF, /^[0-9a-f]{64}$/, "f's endpoint is on a warm port");
    t.not(portF, endpointF, 'named before its endpoint existed');
    t.equal((await stack.nbctl('--bare', '--columns=up', 'list', 'Logical_Switch_Port', portF)).trim(), 'true', 'and up');
    t.equal(await exec(`f-${sfx}`, 'cat', '/sys/class/net/eth0/address'), '0a:58:0a:56:00:02', "with the warm port's MAC");
    t.match(await exec(`f-${sfx}`, 'ping', '-c1', '-W2', '10.86.0.50'), /1 packets received/);
    t.match(await resolve(`e-${sfx}`, `f-${sfx}`), /Address:? *10\.86\.0\.2/, 'e resolves f');
    await docker('rm', '-f', `f-${sfx}`);
    // Short-lived containers give their port back when they end, before the pool refills (2 s after a hand-out):
    // the engine moves the veth back out after Leave, and DeleteEndpoint keeps port and veth.
    await waitFor(async () => (await warmUp()).length >= 2 || undefined, { timeoutMs: 20_000, what: 'two warm ports up again' });
    const keptBeforeN3 = await keptWarm();
    for (let i = 0; i < 3; i++) t.equal(await docker('run', '--rm', '--net', n3, image, 'cat', '/sys/class/net/eth0/mtu'), '1442');
    const kept = (await keptWarm()) - keptBeforeN3;
    t.ok(kept >= 1, `a finished container's port served the next one (${kept} of 3 kept)`);
    const clash = await docker('run', '-d', '--net', n3, '--ip', '10.86.0.50', '--name', `g-${sfx}`, image, 'true').catch((e: Error) => e.message);
    t.match(clash, /10\.86\.0\.50 is already in use/, 'a taken --ip is refused with a clear error');
    await docker('rm', '-f', `e-${sfx}`, `g-${sfx}`).catch(() => undefined);
    await docker('network', 'rm', n3);
    t.notMatch(await stack.nbctl('--bare', '--columns=name', 'list', 'Address_Set'), 'docker_pool_10.86.0.0_24', 'pool released');

    // Cleanup leaves nothing behind.
    await docker('rm', '-f', `a-${sfx}`, `b-${sfx}`, `c-${sfx}`, `d-${sfx}`);
    await docker('network', 'rm', n1, n2);
    const switches = await stack.nbctl('--bare', '--columns=name', 'list', 'Logical_Switch');
    t.notMatch(switches, id1, 'network rm removed the switch');
    t.equal((await stack.nbctl('--bare', '--columns=_uuid', 'list', 'DNS')).trim(), '', 'and no DNS row anywhere');
    t.notMatch(switches, id2);
    // Leave's host teardown finishes after Leave has answered.
    const leftovers = async () => {
      const ports = (await stack!.vsctl('list-ports', 'br-int')).trim();
      const veths = (await run('ip', ['-o', 'link', 'show'])).stdout.match(/\bov[nc][0-9a-f]{12}\b/g) ?? [];
      return { ports, veths };
    };
    await waitFor(async () => {
      const l = await leftovers();
      return (l.ports === '' && l.veths.length === 0) || undefined;
    }, { timeoutMs: 5000, what: 'host side cleaned up' }).catch(() => undefined);
    const left = await leftovers();
    if (left.ports !== '' || left.veths.length > 0) {
      // What the driver did with them, for whoever reads a failed run.
      const names = [...new Set([...left.ports.split(/\s+/), ...left.veths].filter(Boolean).map((n) => n.slice(3)))];
      const log = (await readFile(path.join(dirs.dir, 'driver.log'), 'utf8')).split('\n');
      for (const line of log.filter((l) => names.some((n) => l.includes(n)) || l.includes('"level":40') || l.includes('"level":50'))) t.comment(line);
    }
    t.equal(left.ports, '', 'nothing left on br-int');
    t.same(left.veths, [], 'no veth of ours left in the host namespace');
  });
}
