/**
 * Many hosts, one network: two OVN chassis on this machine (network
 * namespaces joined by a veth, geneve between them), one Docker engine and
 * one driver per host, one central NB/SB. Shows: a container on host A
 * reaches one on host B; 20 containers started at once across both hosts
 * get 20 distinct addresses; names resolve across hosts through OVN DNS,
 * also those of a host's containers started before the other host joined
 * (written to NB only then);
 * removing the network on B, and stopping B's driver, leave A working;
 * each host keeps its own gateway on a shared network (its own routes, its
 * own -o ovn.gateway), whichever host created the switch.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { ensureBusyboxImage, startDockerEngine, type DockerEngine } from '../harness/docker.js';
import { startDriverProcess, type DriverProcess } from '../harness/driver-process.js';
import { namesLeftToDocker, recordedNames } from '../harness/dns-names.js';
import { makePluginDirs, type PluginDirs } from '../harness/plugin-dirs.js';
import { waitFor } from '../harness/process.js';
import { startTwoHosts, type TwoHosts } from '../harness/two-hosts.js';

const NAME = 'openvswitch';
const SUBNET = '10.88.0.0/24';
const GATEWAY = '10.88.0.1';

interface HostSide {
  label: 'A' | 'B';
  dirs: PluginDirs;
  logFile: string;
  engine: DockerEngine;
  driver: DriverProcess;
}

interface PingEnd {
  container: string;
  side: HostSide;
  ip: string;
}

/**
 * What host `index`'s vswitchd does with an ICMP echo from `from` to `to`
 * (ofproto/trace's verdict), its route and neighbour for the other host's
 * tunnel address, and its tunnel ports: enough to tell a missing flow from
 * a broken tunnel when two hosts' containers cannot reach each other.
 */
async function dataplaneFacts(c: TwoHosts, index: 0 | 1, from: PingEnd, to: PingEnd): Promise<string> {
  const host = c.hosts[index];
  const peer = c.hosts[1 - index]!;
  const appctl = (...args: string[]) =>
    host.exec('ovs-appctl', ['-t', path.join(host.dir, 'vswitchd.ctl'), ...args]).then((r) => r.stdout.trim(), (e: Error) => e.message);
  const macOf = (end: PingEnd) =>
    end.side.engine.docker('exec', end.container, 'cat', '/sys/class/net/eth0/address').then((r) => r.stdout.trim(), () => '?');
  // The container's eth0 is one end of a veth; its other end, in the host, is the OVS interface.
  const hostEndOf = async (end: PingEnd): Promise<string> => {
    const iflink = (await end.side.engine.docker('exec', end.container, 'cat', '/sys/class/net/eth0/iflink').catch(() => ({ stdout: '?' }))).stdout.trim();
    const links = (await host.exec('ip', ['-o', 'link']).catch(() => ({ stdout: '' }))).stdout;
    return new RegExp(`^${iflink}: ([^:@]+)`, 'm').exec(links)?.[1] ?? `?(ifindex ${iflink})`;
  };
  const [src, dst, ifname] = await Promise.all([macOf(from), macOf(to), hostEndOf(from)]);
  const ofport = (await host.vsctl('get', 'Interface', ifname, 'ofport', 'external_ids:iface-id').catch((e: Error) => e.message)).trim().split('\n');
  const trace = await appctl('ofproto/trace', 'br-int', `in_port=${ofport[0]},icmp,dl_src=${src},dl_dst=${dst},nw_src=${from.ip},nw_dst=${to.ip},nw_ttl=64,icmp_type=8`);
  const verdict = trace.split('\n').filter((l) => /^(Final flow|Megaflow|Datapath actions)|drop|output|tnl_push|geneve/i.test(l)).slice(-12).join('\n');
  return [
    `${from.container} (${ifname}, ofport ${ofport[0]}, iface-id ${ofport[1] ?? '?'}, ${src}) -> ${to.container} (${dst}):\n${verdict}`,
    `route to ${peer.tunnelIp}: ${await appctl('ovs/route/lookup', peer.tunnelIp)}`,
    `tunnel neighbours:\n${await appctl('tnl/neigh/show')}`,
    `tunnel ports:\n${await appctl('tnl/ports/show')}`,
    // Where br-phy learned each MAC: the tunnel's packets follow it out (dpctl/show numbers the datapath's ports).
    `br-phy MAC table:\n${await appctl('fdb/show', 'br-phy')}`,
    `datapath ports:\n${await appctl('dpctl/show')}`,
    // The cached datapath flows, which ofproto/trace does not show (only what passed in the last 10 s).
    `datapath flows:\n${(await appctl('dpctl/dump-flows')).split('\n').slice(0, 40).join('\n')}`,
    `tunnel link:\n${await host.exec('ip', ['-s', '-o', 'link', 'show', `phy-${host.name}`]).then((r) => r.stdout.trim(), (e: Error) => e.message)}`,
    `br-phy:\n${await host.exec('ip', ['-o', 'link', 'show', 'br-phy']).then((r) => r.stdout.trim(), (e: Error) => e.message)}`,
  ].join('\n');
}

let cluster: TwoHosts | undefined;
const sides: HostSide[] = [];

t.teardown(async () => {
  for (const side of sides) {
    const ids = (await side.engine.docker('ps', '-aq').catch(() => ({ stdout: '' }))).stdout.split(/\s+/).filter(Boolean);
    if (ids.length) await side.engine.docker('rm', '-f', ...ids).catch(() => undefined);
    for (const net of ['shared', 'late', 'lan', 'lan-host', 'split']) await side.engine.docker('network', 'rm', net).catch(() => undefined);
    await side.engine.stop();
    await side.driver.stop();
    await side.dirs.remove();
  }
  await cluster?.stop();
});

t.test('two hosts share one OVN network', async (t) => {
  cluster = await startTwoHosts();
  const c = cluster;
  for (const [i, host] of c.hosts.entries()) {
    // Same plugin name on both hosts, as on real machines; each engine sees only its own plugin directory.
    const dirs = await makePluginDirs(NAME);
    const engine = await startDockerEngine({ engine: '20.10', pluginDir: dirs.pluginDir, netns: host.netns });
    const logFile = path.join(dirs.dir, 'driver.log');
    const driver = await startDriverProcess({
      name: NAME,
      pluginDir: dirs.socketDir,
      nbRemote: c.nbRemote,
      ovsDb: host.ovsRemote,
      logFile,
      netns: host.netns,
      // Debug: names left to Docker on a switch of one host are logged there.
      extraArgs: ['--docker-host', engine.host, '--log-level', 'debug'],
    });
    await ensureBusyboxImage(engine);
    sides.push({ label: i === 0 ? 'A' : 'B', dirs, logFile, engine, driver });
  }
  const [a, b] = sides as [HostSide, HostSide];
  const docker = (side: HostSide, ...args: string[]) => side.engine.docker(...args).then((r) => r.stdout.trim());
  const ipOf = (side: HostSide, container: string) =>
    docker(side, 'inspect', '-f', '{{(index .NetworkSettings.Networks "shared").IPAddress}}', container);
  const ping = (side: HostSide, container: string, ip: string) => docker(side, 'exec', container, 'ping', '-c1', '-W2', ip);

  for (const side of sides) {
    await docker(side, 'network', 'create', '-d', NAME, '--ipam-driver', NAME, '--subnet', SUBNET, '--gateway', GATEWAY, 'shared');
  }
  const switches = (await c.nbctl('--bare', '--columns=name', 'list', 'Logical_Switch')).split(/\s+/).filter(Boolean);
  t.same(switches, ['docker_pool_10.88.0.0_24'], 'both hosts attached to one logical switch');

  // A container on A reaches one on B.
  await docker(a, 'run', '-d', '--net', 'shared', '--name', 'web-a', 'busybox:local', 'sleep', '3600');
  await docker(b, 'run', '-d', '--net', 'shared', '--name', 'web-b', 'busybox:local', 'sleep', '3600');
  const ipA = await ipOf(a, 'web-a');
  const ipB = await ipOf(b, 'web-b');
  t.not(ipA, ipB);
  // Join answers once B's own chassis has the port's flows; A's chassis learns of the binding through
  // the southbound database a moment later, so the very first packet from A may still be dropped.
  const started = Date.now();
  const firstReply = await waitFor(() => ping(a, 'web-a', ipB).catch(() => undefined), { timeoutMs: 10_000, what: 'A reaching B' });
  t.match(firstReply, /1 packets received/, `web-a on host A pings web-b on host B (after ${Date.now() - started} ms)`);
  t.match(await ping(b, 'web-b', ipA), /1 packets received/, 'and back');

  // Names across hosts: OVN answers at the gateway address for every host's containers.
  // Names wait up to 8 s for their batch while starts keep coming (dns-batch-spacing.ts).
  await waitFor(async () => (await c.nbctl('--bare', '--columns=records', 'list', 'DNS')).includes('web-b=') || undefined, {
    timeoutMs: 20_000,
    what: "web-b's name in OVN DNS",
  });
  // Until A's ovn-controller has the record's flows, the query goes on to host A behind the gateway address.
  const lookup = await waitFor(() => docker(a, 'exec', 'web-a', 'nslookup', 'web-b', GATEWAY).catch(() => undefined), {
    timeoutMs: 10_000,
    what: 'web-b resolved on A',
  });
  t.match(lookup, new RegExp(`Address:? *${ipB.replace(/\./g, '\\.')}`), 'web-a resolves web-b (another engine) by name');

  // A late join: A's container starts while no port of B is on the switch. A's driver writes nothing of its
  // names (Docker's DNS on A answers them there); once B's network brings B's ports, A's driver publishes
  // them from its engine, and B's container resolves A's by name.
  const LATE_GW = '10.93.0.1';
  const lateSwitch = 'docker_pool_10.93.0.0_24';
  await docker(a, 'network', 'create', '-d', NAME, '--ipam-driver', NAME, '--subnet', '10.93.0.0/24', '--gateway', LATE_GW, 'late');
  await docker(a, 'run', '-d', '--net', 'late', '--name', 'first-a', 'busybox:local', 'sleep', '3600');
  const firstA = await docker(a, 'inspect', '-f', '{{(index .NetworkSettings.Networks "late").IPAddress}}', 'first-a');
  await namesLeftToDocker(a.logFile, 'first-a');
  t.notOk((await recordedNames(c)).includes('first-a'), 'A alone on the switch: no names on its ports');
  t.equal((await c.nbctl('--bare', '--columns=dns_records', 'find', 'Logical_Switch', `name=${lateSwitch}`)).trim(), '', 'and no DNS row');
  await docker(b, 'network', 'create', '-d', NAME, '--ipam-driver', NAME, '--subnet', '10.93.0.0/24', '--gateway', LATE_GW, 'late');
  await docker(b, 'run', '-d', '--net', 'late', '--name', 'joiner-b', 'busybox:local', 'sleep', '3600');
  const joinerB = await docker(b, 'inspect', '-f', '{{(index .NetworkSettings.Networks "late").IPAddress}}', 'joiner-b');
  const resolveAt = (side: HostSide, container: string, name: string) =>
    waitFor(() => docker(side, 'exec', container, 'nslookup', name, LATE_GW).catch(() => undefined), { timeoutMs: 20_000, what: `${name} resolved in ${container}` });
  t.match(await resolveAt(b, 'joiner-b', 'first-a'), new RegExp(`Address:? *${firstA.replace(/\./g, '\\.')}`), "B's container resolves the name of A's, started before B joined");
  t.match(await resolveAt(a, 'first-a', 'joiner-b'), new RegExp(`Address:? *${joinerB.replace(/\./g, '\\.')}`), "and A's resolves B's");
  await docker(a, 'rm', '-f', 'first-a');
  await docker(b, 'rm', '-f', 'joiner-b');
  for (const side of sides) await docker(side, 'network', 'rm', 'late');


  const names = Array.from({ length: 20 }, (_, i) => `burst-${i}`);
  await Promise.all(
    names.map((n, i) => docker(i % 2 ? b : a, 'run', '-d', '--net', 'shared', '--name', n, 'busybox:local', 'sleep', '3600')),
  );
  const burst = await Promise.all(names.map((n, i) => ipOf(i % 2 ? b : a, n)));
  t.equal(new Set([...burst, ipA, ipB]).size, 22, `22 distinct addresses (${burst.join(' ')})`);
  t.ok(burst.every((ip) => ip.startsWith('10.88.0.') && ip !== GATEWAY), 'all from the pool, none the gateway');
  const bBurst = names.filter((_, i) => i % 2);
  // As for web-b: A's chassis may not have processed B's newest bindings yet.
  const burstB = await ipOf(b, bBurst[0]!);
  const burstReply = await waitFor(() => ping(a, 'burst-0', burstB).catch(() => undefined), { timeoutMs: 10_000, what: 'a burst container on A reaching one on B' });
  t.match(burstReply, /1 packets received/, 'a burst container on A reaches one on B');

  // Removing the network on B leaves A working.
  await docker(b, 'rm', '-f', 'web-b', ...bBurst);
  await docker(b, 'network', 'rm', 'shared');
  t.match(await c.nbctl('--bare', '--columns=name', 'list', 'Logical_Switch'), 'docker_pool_10.88.0.0_24', 'switch kept for A');
  t.match(await ping(a, 'web-a', await ipOf(a, 'burst-0')), /1 packets received/, 'A still works after B removed its network');

  // Stopping B's driver does not disturb A.
  await b.driver.kill();
  t.match(await ping(a, 'web-a', await ipOf(a, 'burst-2')), /1 packets received/, 'A traffic with B driver down');
  await docker(a, 'run', '-d', '--net', 'shared', '--name', 'late-a', 'busybox:local', 'sleep', '3600');
  t.match(await ping(a, 'late-a', ipA), /1 packets received/, 'A starts new containers with B driver down');
  await b.driver.start();

  // -o ovn.gateway=host on both hosts: each host routes its own containers' traffic, masqueraded.
  for (const side of sides) {
    await docker(side, 'network', 'create', '-d', NAME, '--ipam-driver', NAME, '--subnet', '10.89.0.0/24', '-o', 'ovn.gateway=host', 'routed');
  }
  await docker(a, 'run', '-d', '--net', 'routed', '--name', 'out-a', 'busybox:local', 'sleep', '3600');
  t.match(await docker(a, 'exec', 'out-a', 'ip', 'route'), /^default via 10\.89\.0\.1 dev eth0/m, 'default route through OVN');
  // Host B's tunnel address is outside the overlay: reaching it means routed and masqueraded by host A.
  t.match(await docker(a, 'exec', 'out-a', 'ping', '-c1', '-W2', c.hosts[1].tunnelIp), /1 packets received/, 'egress through host A');
  const nat = (await c.hosts[0].exec('iptables-save', ['-t', 'nat'])).stdout;
  t.match(nat, /-A OVN-DOCKER-POSTROUTING -s 10\.89\.0\.0\/24 ! -o ovg[0-9a-f]{12} .*-j MASQUERADE/, "masquerade rule in host A, in the driver's chain");
  await docker(a, 'rm', '-f', 'out-a');
  for (const side of sides) await docker(side, 'network', 'rm', 'routed');
  t.notMatch((await c.hosts[0].exec('iptables-save', ['-t', 'nat'])).stdout, /10\.89\.0\.0/, 'rule removed with the network');

  // Each host decides its own gateway on a shared network. Host B routes 10.91.0.0/24 elsewhere: a veth of the
  // test's own stands for its LAN (this kernel has no dummy links), removed by its exact name.
  const [hostA, hostB] = c.hosts;
  const lan = `lan${randomBytes(4).toString('hex')}`;
  await hostB.exec('ip', ['link', 'add', lan, 'type', 'veth', 'peer', 'name', `${lan}p`]);
  t.teardown(() => hostB.exec('ip', ['link', 'del', lan]).then(() => undefined, () => undefined));
  for (const dev of [lan, `${lan}p`]) await hostB.exec('ip', ['link', 'set', dev, 'up']);
  await hostB.exec('ip', ['route', 'add', '10.91.0.0/24', 'dev', lan]);
  const routesInto = async (prefix: string) => {
    const all = JSON.parse((await hostB.exec('ip', ['-j', '-4', 'route', 'show'])).stdout) as { dst: string; dev?: string }[];
    return all.filter((r) => r.dst.startsWith(prefix)).map((r) => `${r.dst} dev ${r.dev ?? '?'}`);
  };
  /** The host's gateway ports (ovg…) and their IPv4 addresses. */
  const gatewayAddresses = async (host: typeof hostA) =>
    (await host.exec('ip', ['-o', '-4', 'addr', 'show'])).stdout.split('\n').filter((l) => / ovg[0-9a-f]{12} /.test(l)).join('\n');
  const gatewayPortOf = (host: typeof hostA, switchName: string) =>
    host.vsctl('--bare', '--columns=name', 'find', 'Interface', `external_ids:iface-id=${switchName}-gw`);
  const create = (side: HostSide, subnet: string, net: string, ...opts: string[]) =>
    docker(side, 'network', 'create', '-d', NAME, '--ipam-driver', NAME, '--subnet', subnet, ...opts, net);

  // Created on A first (default: the host gateway), then on B, where the route makes it docker_gwbridge.
  await create(a, '10.91.0.0/24', 'lan');
  await create(b, '10.91.0.0/24', 'lan');
  await docker(a, 'run', '-d', '--net', 'lan', '--name', 'lan-a', 'busybox:local', 'sleep', '3600');
  await docker(b, 'run', '-d', '--net', 'lan', '--name', 'lan-b', 'busybox:local', 'sleep', '3600');
  t.match(await docker(a, 'exec', 'lan-a', 'ip', 'route'), /^default via 10\.91\.0\.1 dev eth0/m, 'A: default route through its host gateway');
  t.match(await gatewayAddresses(hostA), / ovg[0-9a-f]{12} +inet 10\.91\.0\.1\/24 /, "A: its gateway port carries the gateway's address");
  t.equal((await gatewayPortOf(hostB, 'docker_pool_10.91.0.0_24')).trim(), '', 'B: no gateway port for the network');
  t.notMatch(await gatewayAddresses(hostB), /10\.91\./, 'B: no gateway address');
  t.match(await docker(b, 'exec', 'lan-b', 'ip', '-o', 'link'), /eth1/, "B: the container has docker_gwbridge's interface");
  t.match(await docker(b, 'exec', 'lan-b', 'ip', 'route'), /^default via (?!10\.91\.0\.1)\S+ dev eth1/m, 'B: default route through docker_gwbridge');
  t.same(await routesInto('10.91.'), [`10.91.0.0/24 dev ${lan}`], "B: its own route is untouched, and alone");
  const lanB = await docker(b, 'inspect', '-f', '{{(index .NetworkSettings.Networks "lan").IPAddress}}', 'lan-b');
  const reply = await waitFor(() => docker(a, 'exec', 'lan-a', 'ping', '-c1', '-W2', lanB).catch(() => undefined), {
    // 10 s was not always enough on a loaded CI machine (twice in many runs, once per OVN version); 30 s tells slow from broken.
    timeoutMs: 30_000,
    what: 'lan-a reaching lan-b',
  }).catch(async (err: unknown) => {
    // Where each side's port is bound, each container's interfaces (MACs against the ports'), what each resolved, and the way back.
    const lanA = await docker(a, 'inspect', '-f', '{{(index .NetworkSettings.Networks "lan").IPAddress}}', 'lan-a').catch(() => '?');
    const facts = await Promise.all([
      c.sbctl('--columns=logical_port,chassis,up,mac', 'list', 'Port_Binding').then((out) => out.split('\n\n').filter((r) => /10\.91\.0\./.test(r)).join('\n')),
      docker(a, 'exec', 'lan-a', 'ip', '-o', 'link'),
      docker(b, 'exec', 'lan-b', 'ip', '-o', 'link'),
      docker(a, 'exec', 'lan-a', 'ip', 'neigh'),
      docker(b, 'exec', 'lan-b', 'ip', 'neigh'),
      docker(b, 'exec', 'lan-b', 'ping', '-c1', '-W2', lanA),
      c.nbctl('--columns=name,addresses,port_security,external_ids', 'list', 'Logical_Switch_Port').then((out) => out.split('\n\n').filter((r) => /10\.91\.0\./.test(r)).join('\n')),
    ].map((p) => p.catch((e: Error) => e.message)));
    // Where each side's datapath sends the packet (first, as CI shows only part of a long message), and its tunnel to the other host.
    const dataplane = await Promise.all([
      dataplaneFacts(c, 0, { container: 'lan-a', side: a, ip: lanA }, { container: 'lan-b', side: b, ip: lanB }),
      dataplaneFacts(c, 1, { container: 'lan-b', side: b, ip: lanB }, { container: 'lan-a', side: a, ip: lanA }),
    ]);
    throw new Error(
      `${(err as Error).message}\nhost A:\n${dataplane[0]}\nhost B:\n${dataplane[1]}\n` +
        `bindings:\n${facts[0]}\nlan-a links:\n${facts[1]}\nlan-b links:\n${facts[2]}\nlan-a neighbours:\n${facts[3]}\n` +
        `lan-b neighbours:\n${facts[4]}\nlan-b -> lan-a (${lanA}):\n${facts[5]}\nNB ports:\n${facts[6]}`,
    );
  });
  t.match(reply, /1 packets received/, 'the two hosts still share the network');
  await docker(b, 'rm', '-f', 'lan-b');
  await docker(b, 'network', 'rm', 'lan');

  // Asked for explicitly on B, the host gateway is refused, naming B's route.
  const refused = await create(b, '10.91.0.0/24', 'lan-host', '-o', 'ovn.gateway=host').then(() => '', (err: Error) => err.message);
  t.match(refused, new RegExp(`subnet 10\\.91\\.0\\.0/24 overlaps this host's route to 10\\.91\\.0\\.0/24 \\(dev ${lan}\\)`), 'B: -o ovn.gateway=host is refused');
  t.same(await routesInto('10.91.'), [`10.91.0.0/24 dev ${lan}`], 'B: its route is still untouched');
  await docker(a, 'rm', '-f', 'lan-a');
  await docker(a, 'network', 'rm', 'lan');
  await hostB.exec('ip', ['link', 'del', lan]);

  // -o ovn.gateway=docker on A, the default on B: each host follows its own choice.
  await create(a, '10.92.0.0/24', 'split', '-o', 'ovn.gateway=docker');
  await create(b, '10.92.0.0/24', 'split');
  await docker(a, 'run', '-d', '--net', 'split', '--name', 'split-a', 'busybox:local', 'sleep', '3600');
  await docker(b, 'run', '-d', '--net', 'split', '--name', 'split-b', 'busybox:local', 'sleep', '3600');
  t.match(await docker(a, 'exec', 'split-a', 'ip', 'route'), /^default via (?!10\.92\.0\.1)\S+ dev eth1/m, 'A (docker): default route through docker_gwbridge');
  t.notMatch(await gatewayAddresses(hostA), /10\.92\./, 'A (docker): no gateway address');
  t.match(await docker(b, 'exec', 'split-b', 'ip', 'route'), /^default via 10\.92\.0\.1 dev eth0/m, 'B (default): default route through its host gateway');
  t.match(await gatewayAddresses(hostB), / ovg[0-9a-f]{12} +inet 10\.92\.0\.1\/24 /, "B (default): its gateway port carries the gateway's address");
  await docker(a, 'rm', '-f', 'split-a');
  await docker(b, 'rm', '-f', 'split-b');
  for (const side of sides) await docker(side, 'network', 'rm', 'split');
  t.notMatch((await hostB.exec('iptables-save', ['-t', 'nat'])).stdout, /10\.92\.0\.0/, "B's rule removed with the network");

  // The last host out removes everything.
  const aContainers = ['web-a', 'late-a', ...names.filter((_, i) => i % 2 === 0)];
  await docker(a, 'rm', '-f', ...aContainers);
  await docker(a, 'network', 'rm', 'shared');
  t.notMatch(await c.nbctl('--bare', '--columns=name', 'list', 'Logical_Switch'), 'docker_pool', 'switch deleted');
  t.notMatch(await c.nbctl('--bare', '--columns=name', 'list', 'Address_Set'), 'docker_pool', 'pool deleted');
});
