/**
 * Engine 28.0's GwAllocChecker (moby 634951457d55): GetCapabilities offers
 * it, the engine sends GwAllocCheck with CreateNetwork's Options before any
 * IPAM call, and an --internal network then comes without a gateway
 * address. The bodies are those an engine 28 or 29 sends
 * (docker-plugin-protocol.md, sections 2 and 3), against the real driver
 * and IPAM on a bare NB (engine-fixture.ts); its containers' packets are
 * in engine-28-dataplane.test.ts.
 */
import t from 'tap';
import { hex, useEngineFixture } from './engine-fixture.js';
import { select, wireMap, wireSet } from '../ovn/nb-reads.js';

const engine = await useEngineFixture(t);
const { post, calls } = engine;
const nb = engine.nb.nb;

/** Options of `docker network create` on an engine 28 or 29 (n.generic): the family switches are always there. */
function engineOptions(extra: Record<string, unknown> = {}, generic: Record<string, string> = {}): Record<string, unknown> {
  return {
    'com.docker.network.enable_ipv4': true,
    'com.docker.network.enable_ipv6': false,
    'com.docker.network.generic': generic,
    ...extra,
  };
}

async function switchIds(name: string): Promise<Map<string, string> | undefined> {
  const [row] = await select(nb, 'Logical_Switch', [['name', '==', name]], ['external_ids']);
  return row && wireMap(row.external_ids);
}

/** Names of the ports on a switch, read from the server. */
async function portsOf(switchName: string): Promise<string[]> {
  const [ls] = await select(nb, 'Logical_Switch', [['name', '==', switchName]], ['ports']);
  const names: string[] = [];
  for (const [, uuid] of wireSet(ls?.ports) as [string, string][]) {
    const [port] = await select(nb, 'Logical_Switch_Port', [['_uuid', '==', uuid]], ['name']);
    if (port) names.push(String(port.name));
  }
  return names.sort();
}

async function portColumns(name: string): Promise<{ addresses: unknown[]; port_security: unknown[] }> {
  const [row] = await select(nb, 'Logical_Switch_Port', [['name', '==', name]], ['addresses', 'port_security']);
  return { addresses: wireSet(row?.addresses), port_security: wireSet(row?.port_security) };
}

async function switchCount(): Promise<number> {
  return (await select(nb, 'Logical_Switch', [], ['name'])).length;
}

t.test('GetCapabilities offers GwAllocChecker, with no body as the engine sends it', async (t) => {
  t.same(await post('NetworkDriver.GetCapabilities'), { status: 200, body: { Scope: 'local', ConnectivityScope: 'global', GwAllocChecker: true } });
});

t.test('GwAllocCheck with the Options engines 28 and 29 send: skip only for --internal', async (t) => {
  const cases: [string, unknown, { SkipIPv4: boolean; SkipIPv6: boolean }][] = [
    ['docker network create -d openvswitch net', engineOptions(), { SkipIPv4: false, SkipIPv6: false }],
    ['--internal', engineOptions({ 'com.docker.network.internal': true }), { SkipIPv4: true, SkipIPv6: true }],
    ['--internal --ipv6', engineOptions({ 'com.docker.network.enable_ipv6': true, 'com.docker.network.internal': true }), { SkipIPv4: true, SkipIPv6: true }],
    ['--ipv4=false --ipv6', engineOptions({ 'com.docker.network.enable_ipv4': false, 'com.docker.network.enable_ipv6': true }), { SkipIPv4: false, SkipIPv6: false }],
    // The gateway address is the network's gateway localport and its DNS address even when egress is docker_gwbridge.
    ['-o ovn.gateway=docker -o com.docker.network.driver.mtu=1400', engineOptions({}, { 'ovn.gateway': 'docker', 'com.docker.network.driver.mtu': '1400' }), { SkipIPv4: false, SkipIPv6: false }],
    ['-o ovn.gateway=host --internal', engineOptions({ 'com.docker.network.internal': true }, { 'ovn.gateway': 'host' }), { SkipIPv4: true, SkipIPv6: true }],
    ['internal: false', engineOptions({ 'com.docker.network.internal': false }), { SkipIPv4: false, SkipIPv6: false }],
    [
      'keys no version sends yet, nested objects among them, are never refused',
      engineOptions({
        'com.docker.network.enable_ipv6': true,
        'com.docker.network.some_future_option': { nested: { list: [1, 'two', null, { deeper: true }] } },
        'com.example.label': 'x',
      }, { 'default-network-opt': 'from daemon.json' }),
      { SkipIPv4: false, SkipIPv6: false },
    ],
    ['Options null', null, { SkipIPv4: false, SkipIPv6: false }],
    ['Options {}', {}, { SkipIPv4: false, SkipIPv6: false }],
  ];
  for (const [what, options, skips] of cases) {
    t.same(await post('NetworkDriver.GwAllocCheck', { Options: options }), { status: 200, body: skips }, what);
  }
  t.same(await post('NetworkDriver.GwAllocCheck', {}), { status: 200, body: { SkipIPv4: false, SkipIPv6: false } }, 'no Options at all');
});

t.test('GwAllocCheck refuses a bad body with 400 and {"Err"}, before any IPAM work, and changes nothing', async (t) => {
  const before = await switchCount();
  const cases: [string, unknown, RegExp][] = [
    ['no body', undefined, /^invalid NetworkDriver\.GwAllocCheck request: body must be object$/],
    ['null', null, /^invalid NetworkDriver\.GwAllocCheck request: body must be object$/],
    ['a list', [{ Options: {} }], /^invalid NetworkDriver\.GwAllocCheck request: body must be object$/],
    ['Options a string', { Options: 'internal' }, /^invalid NetworkDriver\.GwAllocCheck request: body\/Options must be object,null$/],
    ['internal not a boolean', { Options: engineOptions({ 'com.docker.network.internal': 'true' }) }, /^Options\.com\.docker\.network\.internal must be a boolean, not "true"$/],
    ['generic not an object', { Options: { 'com.docker.network.generic': 'ovn.gateway=host' } }, /com\.docker\.network\.generic must be an object/],
    ['an unknown egress', { Options: engineOptions({}, { 'ovn.gateway': 'router' }) }, /ovn\.gateway must be "host" .* not "router"/],
    ['an MTU out of bounds', { Options: engineOptions({}, { 'com.docker.network.driver.mtu': '9' }) }, /com\.docker\.network\.driver\.mtu must be between 1280 and 65000, not 9/],
  ];
  for (const [what, body, err] of cases) {
    const reply = await post('NetworkDriver.GwAllocCheck', body);
    t.equal(reply.status, 400, what);
    t.match(String(reply.body.Err), err, `${what}: ${String(reply.body.Err)}`);
  }
  t.equal(await switchCount(), before, 'no switch made');
});

t.test("CreateNetwork with engine 28/29 Options: known keys read, unknown ones kept out of the way", async (t) => {
  const bodies: [string, Record<string, unknown>, Record<string, unknown>[]][] = [
    ['28: --subnet 10.41.0.0/24', engineOptions(), [{ AddressSpace: 'LocalDefault', Pool: '10.41.0.0/24', Gateway: '10.41.0.1/24' }]],
    [
      '29: -o mtu, --ipv6 on, unknown nested keys',
      engineOptions(
        { 'com.docker.network.enable_ipv6': true, 'com.docker.network.some_future_option': { a: [{ b: 1 }] } },
        { 'com.docker.network.driver.mtu': '1400', 'ovn.gateway': 'docker' },
      ),
      [{ AddressSpace: 'LocalDefault', Pool: '10.42.0.0/24', Gateway: '10.42.0.1/24', AuxAddresses: { printer: '10.42.0.250/24' } }],
    ],
  ];
  for (const [what, options, ipv4] of bodies) {
    const id = hex(32);
    const ipv6 = options['com.docker.network.enable_ipv6'] ? [{ AddressSpace: 'LocalDefault', Pool: 'fd42::/64', Gateway: 'fd42::1/64' }] : [];
    const reply = await post('NetworkDriver.CreateNetwork', { NetworkID: id, Options: options, IPv4Data: ipv4, IPv6Data: ipv6 });
    t.same(reply, { status: 200, body: {} }, what);
    const ids = await switchIds(id);
    t.equal(ids?.get('docker:internal'), 'false', `${what}: not internal`);
    t.same(await portsOf(id), [`${id}-gw`], `${what}: the gateway localport`);
    t.equal((await post('NetworkDriver.DeleteNetwork', { NetworkID: id })).status, 200);
  }
  const mtu = await post('NetworkDriver.CreateNetwork', {
    NetworkID: hex(32),
    Options: engineOptions({}, { 'com.docker.network.driver.mtu': 'jumbo' }),
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.43.0.0/24', Gateway: '10.43.0.1/24' }],
    IPv6Data: [],
  });
  t.equal(mtu.status, 400, 'a known key with a bad value is still refused');
});

t.test("--internal on engine 28+, Docker's IPAM: no Gateway in IPv4Data; the network, endpoints and Join work", async (t) => {
  const networkId = hex(32);
  const options = engineOptions({ 'com.docker.network.internal': true });
  t.same((await post('NetworkDriver.GwAllocCheck', { Options: options })).body, { SkipIPv4: true, SkipIPv6: true });
  // IPAM then reserves no gateway: IPv4Data has none, and the first address is a container's.
  const created = await post('NetworkDriver.CreateNetwork', {
    NetworkID: networkId,
    Options: options,
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.44.0.0/24' }],
    IPv6Data: [],
  });
  t.same(created, { status: 200, body: {} });
  const ids = await switchIds(networkId);
  t.equal(ids?.get('docker:internal'), 'true');
  t.equal(ids?.get('docker:ipv4-subnets'), '10.44.0.0/24');
  t.notOk(ids?.has('docker:ipv4-gateways'), 'no gateway recorded');
  t.same(await portsOf(networkId), [], 'no gateway localport');

  const eps = [hex(32), hex(32)];
  for (const [i, id] of eps.entries()) {
    const reply = await post('NetworkDriver.CreateEndpoint', {
      NetworkID: networkId,
      EndpointID: id,
      Interface: { Address: `10.44.0.${i + 1}/24`, AddressIPv6: '', MacAddress: '' },
      Options: { 'com.docker.network.endpoint.exposedports': [], 'com.docker.network.portmap': [] },
    });
    t.same(reply, { status: 200, body: { Interface: { MacAddress: `0a:58:0a:2c:00:0${i + 1}` } } }, `endpoint at 10.44.0.${i + 1}`);
    const join = await post('NetworkDriver.Join', {
      NetworkID: networkId,
      EndpointID: id,
      SandboxKey: `/var/run/docker/netns/${id.slice(0, 12)}`,
      Options: { 'com.docker.network.endpoint.exposedports': [], 'com.docker.network.portmap': [] },
    });
    t.same(join, { status: 200, body: { InterfaceName: { SrcName: `ovc${id.slice(0, 12)}`, DstPrefix: 'eth' } } }, 'Join: the interface only, no gateway');
  }
  t.same(await portColumns(eps[0]!), { addresses: ['0a:58:0a:2c:00:01 10.44.0.1'], port_security: ['0a:58:0a:2c:00:01 10.44.0.1'] }, 'the first address is a port');
  t.same(await portsOf(networkId), [...eps].sort(), 'two ports, no gateway');
  t.notOk(calls.gateways.includes(networkId), 'the host never became its gateway');

  for (const id of eps) {
    t.equal((await post('NetworkDriver.Leave', { NetworkID: networkId, EndpointID: id })).status, 200);
    t.equal((await post('NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: id })).status, 200);
  }
  t.equal((await post('NetworkDriver.DeleteNetwork', { NetworkID: networkId })).status, 200);
  t.equal(await switchIds(networkId), undefined, 'switch gone');
});

t.test('--internal --ipv6 on engine 28+: no Gateway in IPv4Data nor IPv6Data; dual-stack endpoints and Join work', async (t) => {
  const networkId = hex(32);
  const options = engineOptions({ 'com.docker.network.enable_ipv6': true, 'com.docker.network.internal': true });
  t.same((await post('NetworkDriver.GwAllocCheck', { Options: options })).body, { SkipIPv4: true, SkipIPv6: true });
  const created = await post('NetworkDriver.CreateNetwork', {
    NetworkID: networkId,
    Options: options,
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.49.0.0/24' }],
    IPv6Data: [{ AddressSpace: 'LocalDefault', Pool: 'fd49::/64' }],
  });
  t.same(created, { status: 200, body: {} });
  const ids = await switchIds(networkId);
  t.equal(ids?.get('docker:ipv6-subnets'), 'fd49::/64');
  t.notOk(ids?.has('docker:ipv4-gateways') || ids?.has('docker:ipv6-gateways'), 'no gateway of either family recorded');
  const id = hex(32);
  const reply = await post('NetworkDriver.CreateEndpoint', {
    NetworkID: networkId,
    EndpointID: id,
    Interface: { Address: '10.49.0.1/24', AddressIPv6: 'fd49::1/64', MacAddress: '' },
    Options: {},
  });
  t.same(reply.body, { Interface: { MacAddress: '0a:58:0a:31:00:01' } });
  t.same(await portColumns(id), { addresses: ['0a:58:0a:31:00:01 10.49.0.1 fd49::1'], port_security: ['0a:58:0a:31:00:01 10.49.0.1 fd49::1'] });
  const join = await post('NetworkDriver.Join', { NetworkID: networkId, EndpointID: id, SandboxKey: '', Options: {} });
  t.same(Object.keys(join.body), ['InterfaceName'], 'Join: no Gateway, no GatewayIPv6');
  t.same(await portsOf(networkId), [id], 'no gateway localport');
  t.equal((await post('NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: id })).status, 200);
  t.equal((await post('NetworkDriver.DeleteNetwork', { NetworkID: networkId })).status, 200);
});

t.test('--internal on engine 28+, our IPAM: no gateway RequestAddress; endpoints get the pool from its first address', async (t) => {
  const networkId = hex(32);
  const options = engineOptions({ 'com.docker.network.internal': true });
  t.same((await post('NetworkDriver.GwAllocCheck', { Options: options })).body, { SkipIPv4: true, SkipIPv6: true });
  t.same((await post('IpamDriver.GetDefaultAddressSpaces')).body, { LocalDefaultAddressSpace: 'ovn', GlobalDefaultAddressSpace: 'ovn' });
  const pool = await post('IpamDriver.RequestPool', { AddressSpace: 'ovn', Pool: '10.45.0.0/24', SubPool: '', Options: {}, V6: false });
  t.equal(pool.status, 200, JSON.stringify(pool.body));
  const poolId = String(pool.body.PoolID);
  t.same(pool.body.Data, {}, 'no gateway offered in Data');
  // No RequestAddress of the gateway: straight to CreateNetwork.
  const created = await post('NetworkDriver.CreateNetwork', {
    NetworkID: networkId,
    Options: options,
    IPv4Data: [{ AddressSpace: 'ovn', Pool: '10.45.0.0/24' }],
    IPv6Data: [],
  });
  t.same(created, { status: 200, body: {} });
  const switchName = 'docker_pool_10.45.0.0_24';
  t.notOk((await switchIds(switchName))?.has('docker:ipv4-gateways'), 'no gateway recorded on the pool switch');
  t.same(await portsOf(switchName), [], 'no gateway localport');

  const eps: { id: string; address: string }[] = [];
  for (const name of ['web', 'db']) {
    const address = await post('IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: { 'com.docker.network.endpoint.name': name } });
    t.equal(address.status, 200, JSON.stringify(address.body));
    const id = hex(32);
    eps.push({ id, address: String(address.body.Address) });
    const reply = await post('NetworkDriver.CreateEndpoint', {
      NetworkID: networkId,
      EndpointID: id,
      Interface: { Address: String(address.body.Address), AddressIPv6: '', MacAddress: '' },
      Options: {},
    });
    t.equal(reply.status, 200, JSON.stringify(reply.body));
    const join = await post('NetworkDriver.Join', { NetworkID: networkId, EndpointID: id, SandboxKey: '', Options: {} });
    t.same(Object.keys(join.body), ['InterfaceName'], 'Join: no gateway');
  }
  t.same(eps.map((e) => e.address), ['10.45.0.1/24', '10.45.0.2/24'], 'the first address went to a container, as there is no gateway');
  t.same(await portsOf(switchName), eps.map((e) => e.id).sort());

  for (const ep of eps) {
    await post('NetworkDriver.Leave', { NetworkID: networkId, EndpointID: ep.id });
    t.equal((await post('NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: ep.id })).status, 200);
    t.equal((await post('IpamDriver.ReleaseAddress', { PoolID: poolId, Address: ep.address.split('/')[0] })).status, 200);
  }
  // docker network rm: ReleasePool, then DeleteNetwork (no gateway to release).
  t.equal((await post('IpamDriver.ReleasePool', { PoolID: poolId })).status, 200);
  t.equal((await post('NetworkDriver.DeleteNetwork', { NetworkID: networkId })).status, 200);
  t.equal(await switchIds(switchName), undefined, 'pool switch gone');
  t.same(await select(nb, 'Address_Set', [['name', '==', 'docker_pool_10.45.0.0_24']], ['name']), [], 'pool gone');
});

t.test('a non-internal network still gets its gateway: GwAllocCheck says so, and its Join routes through this host', async (t) => {
  const networkId = hex(32);
  const options = engineOptions();
  t.same((await post('NetworkDriver.GwAllocCheck', { Options: options })).body, { SkipIPv4: false, SkipIPv6: false });
  t.equal((await post('NetworkDriver.CreateNetwork', { NetworkID: networkId, Options: options, IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.46.0.0/24', Gateway: '10.46.0.1/24' }], IPv6Data: [] })).status, 200);
  t.same(await portsOf(networkId), [`${networkId}-gw`]);
  const id = hex(32);
  t.equal((await post('NetworkDriver.CreateEndpoint', { NetworkID: networkId, EndpointID: id, Interface: { Address: '10.46.0.2/24', AddressIPv6: '', MacAddress: '' }, Options: {} })).status, 200);
  const join = await post('NetworkDriver.Join', { NetworkID: networkId, EndpointID: id, SandboxKey: '', Options: { 'com.docker.network.portmap': [] } });
  t.match(join.body, { Gateway: '10.46.0.1', DisableGatewayService: true });
  t.ok(calls.gateways.includes(networkId), 'this host is its gateway');
  await post('NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: id });
  await post('NetworkDriver.DeleteNetwork', { NetworkID: networkId });
});
