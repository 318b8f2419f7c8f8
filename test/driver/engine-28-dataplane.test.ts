/**
 * Networks only engines 28+ create, carrying packets: an --internal network
 * without a gateway address (GwAllocCheck said skip) and an IPv6-only one
 * (--ipv4=false --ipv6), each with Docker's IPAM and with ours. A real
 * single-chassis OVN (ovn-stack.ts) and the driver in-process with warm
 * ports on, called over its socket with the bodies an engine 28 sends;
 * containers are network namespaces this test makes, set up as the engine
 * sets up a container's interface (the Join's SrcName moved in, renamed,
 * given the MAC and the addresses of CreateEndpoint). No engine 28 runs on
 * this machine; the NB side of the same calls is in engine-28-gateway and
 * engine-28-ipv6-only.test.ts.
 */
import t from 'tap';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startDriver, type RunningDriver } from '../../src/service.js';
import { captureLog, LEVEL } from '../harness/driver-log.js';
import { testDriverConfig } from '../harness/driver-config.js';
import { createNetns, deleteNetns, ping } from '../harness/netns.js';
import { startOvnStack, type OvnStack } from '../harness/ovn-stack.js';
import { callPlugin } from '../harness/plugin-client.js';
import { run, waitFor } from '../harness/process.js';
import { hex } from './engine-fixture.js';

let stack: OvnStack;
let dir: string;
let driver: RunningDriver;
const logged = captureLog('warn');
const namespaces: string[] = [];
/** Host ends of veths this file's driver may have made (ovn<12 hex>), deleted by name at the end. */
const hostEnds = new Set<string>();

const ourHostEnds = async (): Promise<string[]> => (await stack.vsctl('list-ports', 'br-int')).split('\n').filter((p) => /^ovn[0-9a-f]{12}$/.test(p));

t.before(async () => {
  stack = await startOvnStack();
  dir = await mkdtemp(path.join(os.tmpdir(), 'ovn-test-engine28-'));
  // Warm ports on, as by default: they must serve the internal network and leave the IPv6-only one alone.
  driver = await startDriver(testDriverConfig(stack, dir, { warmPorts: 2 }), logged.log);
});

t.teardown(async () => {
  for (const ns of namespaces) await deleteNetns(ns);
  if (stack && driver) for (const name of await ourHostEnds().catch(() => [])) hostEnds.add(name);
  await driver?.close();
  for (const name of hostEnds) await run('ip', ['link', 'del', name]).catch(() => undefined);
  await stack?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const call = (method: string, body?: unknown) => callPlugin(driver.address, method, body);
/** Whether this machine forwards IPv6 (the driver is then IPv6-only networks' gateway: test/e2e/ipv6-gateway.test.ts). */
const forwards6 = (await readFile('/proc/sys/net/ipv6/conf/all/forwarding', 'utf8').catch(() => '0')).trim() === '1';

async function ok(method: string, body: unknown): Promise<Record<string, unknown>> {
  const reply = await call(method, body);
  if (reply.status !== 200) throw new Error(`${method}: ${reply.status} ${JSON.stringify(reply.body)}`);
  return reply.body;
}

const SANDBOX_OPTIONS = { 'com.docker.network.endpoint.exposedports': [], 'com.docker.network.portmap': [] };

interface Container {
  endpointId: string;
  ns: string;
  mac: string;
  address: string;
  family: 4 | 6;
}

/**
 * docker run --net <network>: [RequestAddress,] CreateEndpoint, Join, then what the engine does with the
 * Join's SrcName: into the container's namespace, renamed eth0, the endpoint's MAC and address, up.
 */
async function runContainer(networkId: string, family: 4 | 6, address: string, poolId?: string): Promise<Container> {
  if (poolId) {
    const given = await ok('IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: { 'com.docker.network.endpoint.name': `c${hex(3)}` } });
    address = String(given.Address);
  }
  const endpointId = hex(32);
  const created = await ok('NetworkDriver.CreateEndpoint', {
    NetworkID: networkId,
    EndpointID: endpointId,
    Interface: family === 4 ? { Address: address, AddressIPv6: '', MacAddress: '' } : { Address: '', AddressIPv6: address, MacAddress: '' },
    Options: SANDBOX_OPTIONS,
  });
  const mac = String((created.Interface as { MacAddress: string }).MacAddress);
  const joined = await ok('NetworkDriver.Join', {
    NetworkID: networkId,
    EndpointID: endpointId,
    SandboxKey: `/var/run/docker/netns/${endpointId.slice(0, 12)}`,
    Options: SANDBOX_OPTIONS,
  });
  const { SrcName, DstPrefix } = joined.InterfaceName as { SrcName: string; DstPrefix: string };
  // Only the interface: no network here has a gateway through this host (none for IPv6 unless it forwards IPv6).
  const gateway6 = forwards6 ? ['GatewayIPv6', 'DisableGatewayService'] : [];
  if (Object.keys(joined).some((k) => k !== 'InterfaceName' && !gateway6.includes(k))) throw new Error(`Join answered more than the interface: ${JSON.stringify(joined)}`);
  hostEnds.add(`ovn${SrcName.slice(3)}`);
  const ns = await createNetns('ovn28');
  namespaces.push(ns);
  const ifName = `${DstPrefix}0`;
  await run('ip', ['link', 'set', SrcName, 'netns', ns]);
  await run('ip', ['-n', ns, 'link', 'set', SrcName, 'name', ifName]);
  await run('ip', ['-n', ns, 'link', 'set', ifName, 'address', mac]);
  // The engine adds IPv6 addresses without duplicate address detection (IFA_F_NODAD).
  await run('ip', ['-n', ns, 'addr', 'add', address, 'dev', ifName, ...(family === 6 ? ['nodad'] : [])]);
  await run('ip', ['-n', ns, 'link', 'set', ifName, 'up']);
  return { endpointId, ns, mac, address, family };
}

async function ping6(ns: string, ip: string, from?: string): Promise<boolean> {
  const args = ['netns', 'exec', ns, 'ping', '-6', '-c1', '-W2', ...(from ? ['-I', from] : []), ip];
  const reply = await run('ip', args).then((r) => r.stdout, () => '');
  return /1 received/.test(reply);
}

/** Ping that may need a moment: ovn-controller installs a port's flows after Join on a warm port race, ND/ARP first. */
async function reaches(from: Container, to: Container): Promise<boolean> {
  const ip = to.address.split('/')[0]!;
  return waitFor(async () => ((from.family === 6 ? await ping6(from.ns, ip) : await ping(from.ns, ip)) ? true : undefined), {
    timeoutMs: 10_000,
    what: `${from.address} to reach ${ip}`,
  }).then(() => true, () => false);
}

async function removeContainer(networkId: string, c: Container, poolId?: string): Promise<void> {
  await ok('NetworkDriver.Leave', { NetworkID: networkId, EndpointID: c.endpointId });
  await deleteNetns(c.ns);
  await ok('NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: c.endpointId });
  if (poolId) await ok('IpamDriver.ReleaseAddress', { PoolID: poolId, Address: c.address.split('/')[0] });
}

/** Our ports on a switch (gateway localport, endpoints' and warm ones), by name. */
async function portsOn(switchName: string): Promise<string[]> {
  const uuids = (await stack.nbctl('--bare', '--columns=ports', 'find', 'Logical_Switch', `name=${switchName}`)).split(/\s+/).filter(Boolean);
  const names: string[] = [];
  for (const uuid of uuids) names.push((await stack.nbctl('get', 'Logical_Switch_Port', uuid, 'name')).trim().replace(/"/g, ''));
  return names.sort();
}

const INTERNAL_OPTIONS = {
  'com.docker.network.enable_ipv4': true,
  'com.docker.network.enable_ipv6': false,
  'com.docker.network.generic': {},
  'com.docker.network.internal': true,
};
const V6_ONLY_OPTIONS = { 'com.docker.network.enable_ipv4': false, 'com.docker.network.enable_ipv6': true, 'com.docker.network.generic': {} };

for (const ipam of ['docker', 'ovn'] as const) {
  t.test(`--internal without a gateway address (${ipam === 'docker' ? "Docker's IPAM" : 'our IPAM'}): containers reach each other; no gateway anywhere`, async (t) => {
    const subnet = ipam === 'docker' ? '10.181.0.0/24' : '10.182.0.0/24';
    t.same(await ok('NetworkDriver.GwAllocCheck', { Options: INTERNAL_OPTIONS }), { SkipIPv4: true, SkipIPv6: true });
    const poolId = ipam === 'ovn' ? String((await ok('IpamDriver.RequestPool', { AddressSpace: 'ovn', Pool: subnet, SubPool: '', Options: null, V6: false })).PoolID) : undefined;
    const networkId = hex(32);
    await ok('NetworkDriver.CreateNetwork', {
      NetworkID: networkId,
      Options: INTERNAL_OPTIONS,
      IPv4Data: [{ AddressSpace: ipam === 'ovn' ? 'ovn' : 'LocalDefault', Pool: subnet }],
      IPv6Data: [],
    });
    const switchName = ipam === 'ovn' ? `docker_pool_${subnet.replace('/', '_')}` : networkId;
    const prefix = subnet.split('.').slice(0, 3).join('.');
    const a = await runContainer(networkId, 4, `${prefix}.1/24`, poolId);
    const b = await runContainer(networkId, 4, `${prefix}.2/24`, poolId);
    t.ok(await reaches(a, b), `${a.address} -> ${b.address}`);
    t.ok(await reaches(b, a), `${b.address} -> ${a.address}`);
    if (ipam === 'ovn') {
      // A container or a warm port (a request while warm ports are being made gets the next address up) holds it, not a gateway.
      const set = poolId!.split('/')[0]!;
      const holder = (await stack.nbctl('--if-exists', 'get', 'Address_Set', set, `external_ids:"docker:ip:${prefix}.1"`)).trim().replace(/"/g, '');
      t.ok(holder !== '' && holder !== 'gateway', `our IPAM gave the first address to a container or a warm port ("${holder}"), not a gateway`);
    }
    t.notOk((await portsOn(switchName)).some((p) => p.endsWith('-gw')), 'no gateway localport');
    t.equal((await stack.vsctl('--bare', '--columns=name', 'find', 'Interface', `external_ids:docker\\:network-id=${networkId}`, 'external_ids:docker\\:role=gateway')).trim(), '', 'no gateway port on br-int');
    t.notOk(/^default/m.test((await run('ip', ['-n', a.ns, 'route', 'show'])).stdout), 'no default route in the container');

    for (const c of [a, b]) await removeContainer(networkId, c, poolId);
    if (poolId) await ok('IpamDriver.ReleasePool', { PoolID: poolId });
    await ok('NetworkDriver.DeleteNetwork', { NetworkID: networkId });
  });

  t.test(`IPv6-only (--ipv4=false --ipv6, ${ipam === 'docker' ? "Docker's IPAM" : 'our IPAM'}): ping6 between containers, a spoofed source dropped, no warm ports`, async (t) => {
    const subnet = ipam === 'docker' ? 'fd81::/64' : 'fd82::/64';
    const base = subnet.split('/')[0]!;
    t.same(await ok('NetworkDriver.GwAllocCheck', { Options: V6_ONLY_OPTIONS }), { SkipIPv4: false, SkipIPv6: false });
    let poolId: string | undefined;
    if (ipam === 'ovn') {
      poolId = String((await ok('IpamDriver.RequestPool', { AddressSpace: 'ovn', Pool: subnet, SubPool: '', Options: null, V6: true })).PoolID);
      t.same(await ok('IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } }), { Address: `${base}1/64`, Data: {} });
    }
    const networkId = hex(32);
    await ok('NetworkDriver.CreateNetwork', {
      NetworkID: networkId,
      Options: V6_ONLY_OPTIONS,
      IPv4Data: [],
      IPv6Data: [{ AddressSpace: ipam === 'ovn' ? 'ovn' : 'LocalDefault', Pool: subnet, Gateway: `${base}1/64` }],
    });
    const switchName = ipam === 'ovn' ? `docker_pool_${subnet.replace(/[/:]/g, '_')}` : networkId;
    const [a, b, c] = [
      await runContainer(networkId, 6, `${base}2/64`, poolId),
      await runContainer(networkId, 6, `${base}3/64`, poolId),
      await runContainer(networkId, 6, `${base}4/64`, poolId),
    ];
    t.same([a, b, c].map((x) => x.address), [`${base}2/64`, `${base}3/64`, `${base}4/64`]);
    t.match(a.mac, /^0a:59:/, 'a MAC derived from the endpoint id (no IPv4 address to derive it from)');
    t.equal((await stack.nbctl('get', 'Logical_Switch_Port', a.endpointId, 'port_security')).trim(), `["${a.mac} ${base}2"]`, 'port security: the MAC and the IPv6 address');
    t.ok(await reaches(a, b), 'ping6 A -> B');
    t.ok(await reaches(b, a), 'ping6 B -> A');
    t.ok(await reaches(c, b), 'ping6 C -> B from its own address');

    // C claims another address of the subnet: port security drops what it sends from it.
    const spoofed = `${base}99`;
    await run('ip', ['-n', c.ns, 'addr', 'add', `${spoofed}/64`, 'dev', 'eth0', 'nodad']);
    t.notOk(await ping6(c.ns, b.address.split('/')[0]!, spoofed), 'ping6 from a spoofed source is dropped');
    t.ok(await ping6(c.ns, b.address.split('/')[0]!, c.address.split('/')[0]), 'while its own address still passes');

    // Warm ports are IPv4-only: the pool fills the IPv4 switches but never this one, and logs no error.
    t.same(await portsOn(switchName), [...[a, b, c].map((x) => x.endpointId), `${switchName}-gw`].sort(), 'only the three endpoints on its switch, and its gateway localport');
    if (!forwards6) t.equal((await stack.vsctl('--bare', '--columns=name', 'find', 'Interface', `external_ids:docker\\:network-id=${networkId}`, 'external_ids:docker\\:role=gateway')).trim(), '', 'no gateway port on br-int: this host does not forward IPv6');
    t.equal((await stack.nbctl('--bare', '--columns=name', 'find', 'Address_Set', `name=docker_ports_${switchName}`)).trim(), '', 'no warm port set for it');

    for (const x of [a, b, c]) await removeContainer(networkId, x, poolId);
    if (poolId) await ok('IpamDriver.ReleasePool', { PoolID: poolId });
    await ok('NetworkDriver.DeleteNetwork', { NetworkID: networkId });
    t.equal((await stack.nbctl('--bare', '--columns=name', 'find', 'Logical_Switch', `name=${switchName}`)).trim(), '', 'switch gone');
  });
}

t.test('the warm pool ran meanwhile (it made ports for the IPv4 networks) and logged no error', async (t) => {
  // A network that stays, so that the pool has a switch to fill whatever the order of the tests above.
  const networkId = hex(32);
  await ok('NetworkDriver.CreateNetwork', { NetworkID: networkId, Options: INTERNAL_OPTIONS, IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.183.0.0/24' }], IPv6Data: [] });
  const warm = await waitFor(
    async () => {
      const names = (await stack.nbctl('--bare', '--columns=name', 'find', 'Logical_Switch_Port', `external_ids:docker\\:warm=${stack.systemId}`)).split(/\s+/).filter(Boolean);
      return names.length >= 2 ? names : undefined;
    },
    { timeoutMs: 20_000, what: 'warm ports on the internal network' },
  );
  t.ok(warm.length >= 2, `${warm.length} warm ports`);
  const errors = logged.entries.filter((e) => (e.level ?? 0) >= LEVEL.error);
  t.same(errors, [], 'no error logged');
  await ok('NetworkDriver.DeleteNetwork', { NetworkID: networkId });
});
