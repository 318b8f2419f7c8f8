/**
 * IPv6 through the host (a dual-stack network whose gateway is the host):
 * 20.10 in host A of the two-host harness (our IPAM), 26.1 in host B
 * (Docker's IPAM), each with its own firewall on, the driver beside it, and
 * a namespace "outside" the host with IPv4 and IPv6 behind a veth of the
 * host. Shows: with the host's IPv6 forwarding off (the operator's choice)
 * a container gets no IPv6 default route and the driver says why; with it
 * on, a new network's container gets the host's IPv6 gateway, reaches the
 * outside over IPv6, masqueraded in the driver's ip6tables chain, and the
 * outside cannot reach it, and so does a container joining the first
 * network after that; an IPv6-only network (called as engine 28 calls the
 * driver) gets the IPv6 gateway alone and its container reaches the outside;
 * IPv4 egress as before; after removal and
 * cleanup, iptables-save as before the driver ran, and ip6tables-save but
 * for an empty table with ACCEPT policies (iptables-nft cannot delete one).
 */
import t from 'tap';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
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
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

let cluster: TwoHosts | undefined;
t.before(async () => {
  cluster = await startTwoHosts();
});
t.teardown(async () => {
  await cluster?.stop();
});

/** iptables-save or ip6tables-save of a host, without counters and comments. */
async function saved(host: Host, cmd: 'iptables-save' | 'ip6tables-save'): Promise<string> {
  return (await host.exec(cmd, [])).stdout
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .map((l) => l.replace(/\[\d+:\d+\]/, '[0:0]'))
    .join('\n');
}

/** The chains and rules of a save, without built-in chains left at their ACCEPT policy. */
function rulesOf(save: string): string[] {
  return save.split('\n').filter((l) => l.startsWith('-') || (l.startsWith(':') && !/^:(INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) ACCEPT /.test(l)));
}

const cases: { engine: EngineVersion; host: 0 | 1; n: number; ourIpam: boolean }[] = [
  { engine: '20.10', host: 0, n: 71, ourIpam: true },
  { engine: '26.1', host: 1, n: 72, ourIpam: false },
];

for (const c of cases) {
  t.test(`engine ${c.engine}: IPv6 through the host where it forwards IPv6`, async (t) => {
    if (!(await dockerAvailable(c.engine))) {
      t.fail(`engine ${c.engine} cannot be started on this machine`);
      return;
    }
    const host = cluster!.hosts[c.host];
    const sfx = randomBytes(2).toString('hex');
    const [off, on] = [`v6off-${sfx}`, `v6on-${sfx}`];
    const [c1, c2, c3] = [`c1-${sfx}`, `c2-${sfx}`, `c3-${sfx}`];
    const hostOut6 = `fd${c.n}:ff::1`;
    const outside6 = `fd${c.n}:ff::2`;
    const hostOut = `198.51.${c.n}.1`;
    const outside4 = `198.51.${c.n}.2`;

    let outside: string | undefined;
    /** The IPv6-only network's "container" (a namespace of this test). */
    let ctr: string | undefined;
    let dirs: PluginDirs | undefined;
    let engine: DockerEngine | undefined;
    let driver: DriverProcess | undefined;
    t.teardown(async () => {
      if (engine) {
        await engine.docker('rm', '-f', c1, c2, c3).catch(() => undefined);
        for (const n of [off, on]) await engine.docker('network', 'rm', n).catch(() => undefined);
        await engine.stop();
      }
      await driver?.stop();
      await dirs?.remove();
      if (outside) await deleteNetns(outside);
      if (ctr) await deleteNetns(ctr);
      await host.exec('sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=0']).catch(() => undefined);
    });

    outside = await createNetns('ovnx6');
    const [hostEnd, outEnd] = [`ov6${sfx}h`, `ov6${sfx}o`];
    await run('ip', ['-n', host.netns, 'link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', outEnd, 'netns', outside]);
    await run('ip', ['-n', host.netns, 'addr', 'add', `${hostOut}/24`, 'dev', hostEnd]);
    await run('ip', ['-n', host.netns, 'addr', 'add', `${hostOut6}/64`, 'dev', hostEnd, 'nodad']);
    await run('ip', ['-n', host.netns, 'link', 'set', hostEnd, 'up']);
    await run('ip', ['-n', outside, 'addr', 'add', `${outside4}/24`, 'dev', outEnd]);
    await run('ip', ['-n', outside, 'addr', 'add', `${outside6}/64`, 'dev', outEnd, 'nodad']);
    await run('ip', ['-n', outside, 'link', 'set', outEnd, 'up']);
    await run('ip', ['-n', outside, 'link', 'set', 'lo', 'up']);
    // So that outside can try the containers' own addresses through the host (which must refuse).
    await run('ip', ['-n', outside, '-6', 'route', 'add', `fd${c.n}::/16`, 'via', hostOut6]);
    await host.exec('sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=0']);

    dirs = await makePluginDirs(NAME);
    engine = await startDockerEngine({ engine: c.engine, pluginDir: dirs.pluginDir, netns: host.netns, firewall: true });
    const image = await ensureBusyboxImage(engine);
    const before4 = await saved(host, 'iptables-save');
    const before6 = await saved(host, 'ip6tables-save');
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
    const ipam = c.ourIpam ? ['--ipam-driver', NAME] : [];
    const create = (net: string, i: number) =>
      docker('network', 'create', '-d', NAME, ...ipam, '--ipv6', '--subnet', `10.${c.n}.${i}.0/24`, '--subnet', `fd${c.n}:${i}::/64`, net);
    const ping6 = (container: string, ip: string) => engine!.docker('exec', container, 'ping', '-6', '-c1', '-W2', ip).then((r) => r.stdout, (e: Error) => e.message);

    // Forwarding off: IPv6 stays on the network; IPv4 egress through the host as ever.
    await create(off, 1);
    await docker('run', '-d', '--net', off, '--name', c1, image, 'sleep', '3600');
    t.match(await docker('exec', c1, 'ip', '-6', 'addr', 'show', 'eth0'), new RegExp(`inet6 fd${c.n}:1::`), `${c1} has its IPv6 address`);
    t.notMatch(await docker('exec', c1, 'ip', '-6', 'route'), /^default/m, 'forwarding off: no IPv6 default route');
    t.match(await docker('exec', c1, 'ip', 'route'), new RegExp(`^default via 10\\.${c.n}\\.1\\.1 dev eth0`, 'm'), 'IPv4 default route through the host');
    t.match(await docker('exec', c1, 'ping', '-c1', '-W2', outside4), /1 packets received/, 'IPv4 egress through the host');
    const warned = (await readDriverLog(logFile)).filter((e) => /IPv6 forwarding is off/.test(String(e.msg)));
    t.equal(warned.length, 1, 'the driver says once why, and what to do');

    // Forwarding on (the operator's step): a network set up now routes IPv6 through the host.
    await host.exec('sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=1']);
    await create(on, 2);
    await docker('run', '-d', '--net', on, '--name', c2, image, 'sleep', '3600');
    t.match(await docker('exec', c2, 'ip', '-6', 'route'), new RegExp(`^default via fd${c.n}:2::1 dev eth0`, 'm'), 'IPv6 default route through the host gateway');
    t.match(await ping6(c2, outside6), /1 packets received/, `${c2} reaches ${outside6} over IPv6 through the host`);
    const nat6 = await saved(host, 'ip6tables-save');
    t.match(nat6, new RegExp(`-A OVN-DOCKER-POSTROUTING -s fd${c.n}:2::/64 ! -o ovg[0-9a-f]{12} .*-j MASQUERADE`), "masqueraded in the driver's ip6tables chain");
    const ip6 = (await docker('inspect', '-f', `{{(index .NetworkSettings.Networks "${on}").GlobalIPv6Address}}`, c2)).trim();
    const fromOutside = await run('ip', ['netns', 'exec', outside, 'ping', '-6', '-c1', '-W1', ip6]).then((r) => r.stdout, (e: Error) => e.message);
    t.notMatch(fromOutside, /1 packets received/, `outside cannot reach ${c2}'s ${ip6} through the host`);
    t.match(await docker('exec', c2, 'ping', '-c1', '-W2', outside4), /1 packets received/, 'IPv4 egress as well');
    await docker('run', '-d', '--net', off, '--name', c3, image, 'sleep', '3600');
    t.match(await docker('exec', c3, 'ip', '-6', 'route'), new RegExp(`^default via fd${c.n}:1::1 dev eth0`, 'm'), `a container joining ${off} now gets the IPv6 gateway too`);
    t.match(await ping6(c3, outside6), /1 packets received/, `and reaches ${outside6}`);

    // An IPv6-only network (engine 28's --ipv4=false --ipv6; no such engine here): the driver called as 28
    // calls it, the container a namespace set up as the engine sets one up from Join's answer.
    if (c.engine === '20.10') {
      const call = async (method: string, body: unknown) => {
        const reply = await callPlugin(driver!.socket, method, body);
        if (reply.status !== 200) throw new Error(`${method}: ${JSON.stringify(reply.body)}`);
        return reply.body;
      };
      const networkId = randomBytes(32).toString('hex');
      const endpointId = randomBytes(32).toString('hex');
      const gw6 = `fd${c.n}:3::1`;
      const options = { 'com.docker.network.enable_ipv4': false, 'com.docker.network.enable_ipv6': true, 'com.docker.network.generic': {} };
      const sandbox = { 'com.docker.network.endpoint.exposedports': [], 'com.docker.network.portmap': [] };
      await call('NetworkDriver.CreateNetwork', { NetworkID: networkId, Options: options, IPv4Data: [], IPv6Data: [{ AddressSpace: 'LocalDefault', Pool: `fd${c.n}:3::/64`, Gateway: `${gw6}/64` }] });
      const created = await call('NetworkDriver.CreateEndpoint', {
        NetworkID: networkId, EndpointID: endpointId, Interface: { Address: '', AddressIPv6: `fd${c.n}:3::2/64`, MacAddress: '' }, Options: sandbox,
      });
      const joined = await call('NetworkDriver.Join', { NetworkID: networkId, EndpointID: endpointId, SandboxKey: `/var/run/docker/netns/${endpointId.slice(0, 12)}`, Options: sandbox });
      t.same([joined.Gateway, joined.GatewayIPv6, joined.DisableGatewayService], [undefined, gw6, true], 'IPv6-only: Join gives the IPv6 gateway only, and no docker_gwbridge');
      ctr = await createNetns('ovnc6');
      const src = (joined.InterfaceName as { SrcName: string }).SrcName;
      await run('ip', ['-n', host.netns, 'link', 'set', src, 'netns', ctr]);
      await run('ip', ['-n', ctr, 'link', 'set', src, 'name', 'eth0']);
      await run('ip', ['-n', ctr, 'link', 'set', 'eth0', 'address', String((created.Interface as { MacAddress: string }).MacAddress)]);
      await run('ip', ['-n', ctr, 'addr', 'add', `fd${c.n}:3::2/64`, 'dev', 'eth0', 'nodad']);
      await run('ip', ['-n', ctr, 'link', 'set', 'eth0', 'up']);
      await run('ip', ['-n', ctr, '-6', 'route', 'add', 'default', 'via', gw6]);
      const pinged = await waitFor(() => run('ip', ['netns', 'exec', ctr!, 'ping', '-6', '-c1', '-W2', outside6]).then((r) => r.stdout, () => undefined), {
        timeoutMs: 10_000,
        what: `${outside6} from the IPv6-only container`,
      }).catch(async (e: Error) => {
        const facts = await Promise.all([
          run('ip', ['-n', ctr!, '-6', 'neigh']).then((r) => r.stdout),
          host.exec('ip', ['-6', 'addr']).then((r) => r.stdout),
          host.exec('ip', ['-6', 'route']).then((r) => r.stdout),
          host.exec('ip', ['link']).then((r) => r.stdout),
          cluster!.nbctl('--columns=name,type,addresses', 'list', 'Logical_Switch_Port').then((r) => r.split('\n\n').filter((x) => x.includes(`fd${c.n}:3`)).join('\n')),
          host.vsctl('--columns=name,mac_in_use,mac,external_ids', 'list', 'Interface'),
        ].map((p) => p.catch((err: Error) => err.message)));
        return `${e.message}\n${facts.join('\n----\n')}`;
      });
      t.match(pinged, /1 packets received|1 received/, `IPv6-only: the container reaches ${outside6} through the host`);
      await call('NetworkDriver.Leave', { NetworkID: networkId, EndpointID: endpointId });
      await deleteNetns(ctr);
      ctr = undefined;
      await call('NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: endpointId });
      await call('NetworkDriver.DeleteNetwork', { NetworkID: networkId });
    }

    // Gone: containers, networks, driver; cleanup takes the rest.
    await docker('rm', '-f', c1, c2, c3);
    await docker('network', 'rm', off, on);
    await driver.stop();
    const errors = (await readDriverLog(logFile)).filter((e) => (e.level ?? 0) >= LEVEL.error);
    t.same(errors.map((e) => e.msg), [], 'the driver logged no error');
    const cleanup = await run('ip', [
      'netns', 'exec', host.netns, process.execPath, '--import', 'tsx', path.join(ROOT, 'src/cli/main.ts'), 'cleanup',
      '--name', NAME, '--plugin-dir', dirs.socketDir, '--ovs-db', host.ovsRemote, '--ovn-nb', cluster!.nbRemote, '--nb',
    ], { timeoutMs: 60_000 });
    t.match(cleanup.stdout, /cleanup done/, 'cleanup ran');
    // iptables-nft cannot delete a table: one the driver's chains brought stays, empty, with ACCEPT policies.
    t.same(rulesOf(await saved(host, 'ip6tables-save')), rulesOf(before6), 'ip6tables-save: every chain and rule as before the driver ran');
    t.equal(await saved(host, 'iptables-save'), before4, 'iptables-save as before the driver ran');
  });
}
