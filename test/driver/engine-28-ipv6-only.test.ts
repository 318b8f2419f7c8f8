/**
 * IPv6-only networks of engine 28.0 (`docker network create --ipv4=false
 * --ipv6`): CreateNetwork has no IPv4 data ([] or null), CreateEndpoint an
 * empty Interface.Address and an IPv6 one. Every method takes them, with
 * Docker's IPAM and ours, on a bare NB (engine-fixture.ts): the port carries
 * the MAC and the IPv6 address only, the MAC is derived from the endpoint
 * id when Docker gives none, Join gives no gateway (IPv6 egress through the
 * host is not supported: Docker's docker_gwbridge serves), names are
 * published with the IPv6 address, no warm port is made for the network.
 * Packets between such endpoints: engine-28-dataplane.test.ts.
 */
import t from 'tap';
import { macFromId } from '../../src/net/mac.js';
import { hex, useEngineFixture } from './engine-fixture.js';
import { select, wireMap, wireSet } from '../ovn/nb-reads.js';

const engine = await useEngineFixture(t);
const { post, calls } = engine;
const nb = engine.nb.nb;

const V6_ONLY_OPTIONS = {
  'com.docker.network.enable_ipv4': false,
  'com.docker.network.enable_ipv6': true,
  'com.docker.network.generic': {},
};
const SANDBOX_OPTIONS = { 'com.docker.network.endpoint.exposedports': [], 'com.docker.network.portmap': [] };

async function portColumns(name: string) {
  const [row] = await select(nb, 'Logical_Switch_Port', [['name', '==', name]], ['addresses', 'port_security', 'external_ids']);
  return row && { addresses: wireSet(row.addresses), port_security: wireSet(row.port_security), ids: wireMap(row.external_ids) };
}

async function switchIds(name: string): Promise<Map<string, string> | undefined> {
  const [row] = await select(nb, 'Logical_Switch', [['name', '==', name]], ['external_ids']);
  return row && wireMap(row.external_ids);
}

/** Every DNS record of our DNS rows, read from the server. */
async function dnsRecords(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const row of await select(nb, 'DNS', [], ['records'])) for (const [name, value] of wireMap(row.records)) out[name] = value;
  return out;
}

async function createEndpoint(networkId: string, addressIPv6: string, mac = '') {
  const id = hex(32);
  const reply = await post('NetworkDriver.CreateEndpoint', {
    NetworkID: networkId,
    EndpointID: id,
    Interface: { Address: '', AddressIPv6: addressIPv6, MacAddress: mac },
    Options: SANDBOX_OPTIONS,
  });
  return { id, reply };
}

t.test("Docker's IPAM: CreateNetwork, CreateEndpoint, Join, Leave, DeleteEndpoint, DeleteNetwork, as engine 28 sends them", async (t) => {
  for (const ipv4Data of [[], null]) {
    const networkId = hex(32);
    const created = await post('NetworkDriver.CreateNetwork', {
      NetworkID: networkId,
      Options: V6_ONLY_OPTIONS,
      IPv4Data: ipv4Data,
      IPv6Data: [{ AddressSpace: 'LocalDefault', Pool: 'fd51::/64', Gateway: 'fd51::1/64' }],
    });
    t.same(created, { status: 200, body: {} }, `IPv4Data ${JSON.stringify(ipv4Data)}`);
    const ids = await switchIds(networkId);
    t.equal(ids?.get('docker:ipv6-subnets'), 'fd51::/64');
    t.equal(ids?.get('docker:ipv6-gateways'), 'fd51::1');
    t.notOk(ids?.has('docker:ipv4-subnets'), 'no IPv4 subnet');
    const [gw] = await select(nb, 'Logical_Switch_Port', [['name', '==', `${networkId}-gw`]], ['type', 'addresses']);
    t.same(gw && [gw.type, gw.addresses], ['localport', `${macFromId(`${networkId}-gw`)} fd51::1`], 'the gateway localport: a MAC from its name (no IPv4 address to derive one from) and the IPv6 gateway');

    const a = await createEndpoint(networkId, 'fd51::2/64');
    const mac = macFromId(a.id);
    t.same(a.reply, { status: 200, body: { Interface: { MacAddress: mac } } }, 'a MAC derived from the endpoint id, returned to Docker');
    t.same(await portColumns(a.id), {
      addresses: [`${mac} fd51::2`],
      port_security: [`${mac} fd51::2`],
      ids: new Map([
        ['docker:owner', 'ovn-docker-driver'],
        ['docker:switch', networkId],
        ['docker:network-id', networkId],
        ['docker:endpoint-id', a.id],
        ['docker:ipv6', 'fd51::2/64'],
        ['docker:chassis', 'host-a'],
      ]),
    }, 'the port: the MAC and the IPv6 address only');
    const retried = await post('NetworkDriver.CreateEndpoint', {
      NetworkID: networkId,
      EndpointID: a.id,
      Interface: { Address: '', AddressIPv6: 'fd51::2/64', MacAddress: '' },
      Options: SANDBOX_OPTIONS,
    });
    t.same(retried.body, { Interface: { MacAddress: mac } }, 'a retry gets the same MAC');

    // --mac-address: the engine's MAC is used and not echoed back.
    const b = await createEndpoint(networkId, 'fd51::3/64', '02:42:ac:11:00:03');
    t.same(b.reply, { status: 200, body: {} });
    t.same((await portColumns(b.id))?.addresses, ['02:42:ac:11:00:03 fd51::3']);

    for (const ep of [a, b]) {
      const joined = await post('NetworkDriver.Join', { NetworkID: networkId, EndpointID: ep.id, SandboxKey: `/var/run/docker/netns/${ep.id.slice(0, 12)}`, Options: SANDBOX_OPTIONS });
      t.same(joined, { status: 200, body: { InterfaceName: { SrcName: `ovc${ep.id.slice(0, 12)}`, DstPrefix: 'eth' } } }, 'Join: no Gateway, no GatewayIPv6: docker_gwbridge serves');
    }
    t.match(calls.plugs.find((p) => p.portName === a.id), { endpointId: a.id, networkId, mac, mtu: 1442 }, 'plugged with its MAC');
    t.ok(calls.gateways.includes(networkId), 'this host was asked to be its gateway (it is where it forwards IPv6; this one does not)');
    t.same((await post('NetworkDriver.EndpointOperInfo', { NetworkID: networkId, EndpointID: a.id })).body, { Value: { 'ovn.logical_switch_port': a.id, 'ovn.mac': mac, 'ovn.up': false } });

    // Names: published with the IPv6 address (OVN answers AAAA), gone with the endpoint. A port of
    // another host makes the switch span hosts: only then do names go to its DNS row.
    const other = hex(32);
    await engine.nb.networks.ensureEndpoint({ networkId, endpointId: other, ipv6: 'fd51::9/64', chassis: 'host-b' });
    t.same((await engine.nb.networks.publishNames([{ endpointId: a.id, names: ['web6', 'alias6'] }], engine.nb.chassis)).published, [a.id]);
    t.match(await dnsRecords(), { web6: 'fd51::2', alias6: 'fd51::2' });

    for (const ep of [a, b]) {
      t.equal((await post('NetworkDriver.Leave', { NetworkID: networkId, EndpointID: ep.id })).status, 200);
      t.equal((await post('NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: ep.id })).status, 200);
      t.equal(await portColumns(ep.id), undefined, 'port gone');
    }
    t.notOk('web6' in (await dnsRecords()), 'its names went with it');
    t.equal(await engine.nb.networks.deleteEndpoint(other), true, "the other host's port goes too");
    t.equal((await post('NetworkDriver.DeleteNetwork', { NetworkID: networkId })).status, 200);
    t.equal(await switchIds(networkId), undefined, 'switch gone');
  }
});

t.test('an IPv6 address outside the network, or an IPv4 one on an IPv6-only network, is refused', async (t) => {
  const networkId = hex(32);
  await post('NetworkDriver.CreateNetwork', { NetworkID: networkId, Options: V6_ONLY_OPTIONS, IPv4Data: [], IPv6Data: [{ AddressSpace: 'LocalDefault', Pool: 'fd52::/64', Gateway: 'fd52::1/64' }] });
  const outside = await createEndpoint(networkId, 'fd99::2/64');
  t.equal(outside.reply.status, 400);
  t.match(String(outside.reply.body.Err), /Interface\.AddressIPv6 fd99::2\/64 is not inside the network's subnets \(fd52::\/64\)/);
  const family = await post('NetworkDriver.CreateEndpoint', { NetworkID: networkId, EndpointID: hex(32), Interface: { Address: 'fd52::5/64', AddressIPv6: '', MacAddress: '' }, Options: {} });
  t.equal(family.status, 400);
  t.match(String(family.body.Err), /Interface\.Address/);
  const v4 = await post('NetworkDriver.CreateEndpoint', { NetworkID: networkId, EndpointID: hex(32), Interface: { Address: '10.52.0.5/24', AddressIPv6: 'fd52::5/64', MacAddress: '' }, Options: {} });
  t.equal(v4.status, 400);
  t.equal(v4.body.Err, 'Interface.Address 10.52.0.5/24: the network has no IPv4 subnet');
  await post('NetworkDriver.DeleteNetwork', { NetworkID: networkId });
});

t.test('our IPAM: --ipam-driver openvswitch --ipv4=false --ipv6 --subnet fd53::/64 asks for an IPv6 pool only', async (t) => {
  // The engine's calls for `docker network create`: GwAllocCheck, then IPAM for the one family, then CreateNetwork.
  t.same((await post('NetworkDriver.GwAllocCheck', { Options: V6_ONLY_OPTIONS })).body, { SkipIPv4: false, SkipIPv6: false });
  const pool = await post('IpamDriver.RequestPool', { AddressSpace: 'ovn', Pool: 'fd53::/64', SubPool: '', Options: null, V6: true });
  t.equal(pool.status, 200, JSON.stringify(pool.body));
  t.equal(pool.body.Pool, 'fd53::/64');
  const poolId = String(pool.body.PoolID);
  const gateway = await post('IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } });
  t.same(gateway.body, { Address: 'fd53::1/64', Data: {} });
  const networkId = hex(32);
  const created = await post('NetworkDriver.CreateNetwork', {
    NetworkID: networkId,
    Options: V6_ONLY_OPTIONS,
    IPv4Data: [],
    IPv6Data: [{ AddressSpace: 'ovn', Pool: 'fd53::/64', Gateway: 'fd53::1/64' }],
  });
  t.same(created, { status: 200, body: {} });
  const switchName = 'docker_pool_fd53___64';
  t.equal((await switchIds(switchName))?.get('docker:pool-v6'), switchName, "the network is on the pool's switch");
  t.same(engine.nb.warm.eligiblePools('host-a').filter((p) => p.includes('fd53')), [], 'no warm ports for it: they are IPv4-only');

  const eps: { id: string; address: string }[] = [];
  for (const name of ['web', 'db']) {
    // Engine 29 names the container; a MAC key may come too.
    const address = await post('IpamDriver.RequestAddress', {
      PoolID: poolId,
      Address: '',
      Options: { 'com.docker.network.endpoint.name': name, 'com.docker.network.endpoint.macaddress': '02:42:ac:11:00:09' },
    });
    t.equal(address.status, 200, JSON.stringify(address.body));
    const ep = await createEndpoint(networkId, String(address.body.Address));
    t.equal(ep.reply.status, 200, JSON.stringify(ep.reply.body));
    eps.push({ id: ep.id, address: String(address.body.Address) });
    const joined = await post('NetworkDriver.Join', { NetworkID: networkId, EndpointID: ep.id, SandboxKey: '', Options: SANDBOX_OPTIONS });
    t.same(Object.keys(joined.body), ['InterfaceName']);
  }
  t.same(eps.map((e) => e.address), ['fd53::2/64', 'fd53::3/64']);
  t.same((await portColumns(eps[1]!.id))?.addresses, [`${macFromId(eps[1]!.id)} fd53::3`]);

  for (const ep of eps) {
    await post('NetworkDriver.Leave', { NetworkID: networkId, EndpointID: ep.id });
    t.equal((await post('NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: ep.id })).status, 200);
    t.equal((await post('IpamDriver.ReleaseAddress', { PoolID: poolId, Address: ep.address.split('/')[0] })).status, 200);
  }
  t.equal((await post('IpamDriver.ReleaseAddress', { PoolID: poolId, Address: 'fd53::1' })).status, 200);
  t.equal((await post('IpamDriver.ReleasePool', { PoolID: poolId })).status, 200);
  t.equal((await post('NetworkDriver.DeleteNetwork', { NetworkID: networkId })).status, 200);
  t.equal(await switchIds(switchName), undefined, 'switch gone');
  t.same(await select(nb, 'Address_Set', [['name', '==', switchName]], ['name']), [], 'pool gone');
});

t.test('our IPAM: an IPv6 pool without --subnet is refused clearly (the default range is IPv4)', async (t) => {
  const before = (await select(nb, 'Address_Set', [], ['name'])).length;
  const reply = await post('IpamDriver.RequestPool', { AddressSpace: 'ovn', Pool: '', SubPool: '', Options: null, V6: true });
  t.equal(reply.status, 400);
  t.match(String(reply.body.Err), /an IPv6 pool of this IPAM needs --subnet/);
  t.equal((await select(nb, 'Address_Set', [], ['name'])).length, before, 'no pool made');
});
