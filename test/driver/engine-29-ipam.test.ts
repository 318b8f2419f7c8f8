/**
 * Our IPAM as engines 27 to 29 call it (docker-plugin-protocol.md, section
 * 3): 29's RequestAddress Options name the container; an engine asking
 * again for the pool a network has (Pool = its subnet) gets that pool and
 * that network's switch back; and the overlap loop of 27+ (a pool without
 * --subnet that overlaps a host route is kept while the engine asks again,
 * then released) gets a different pool each time and frees them all.
 * Real IPAM and network driver on a bare NB (engine-fixture.ts).
 */
import t from 'tap';
import { hex, useEngineFixture } from './engine-fixture.js';
import { select, wireMap } from '../ovn/nb-reads.js';

const engine = await useEngineFixture(t);
const { post } = engine;
const nb = engine.nb.nb;

const GATEWAY = { RequestAddressType: 'com.docker.network.gateway' };

async function poolIds(name: string): Promise<Map<string, string> | undefined> {
  const [row] = await select(nb, 'Address_Set', [['name', '==', name]], ['external_ids']);
  return row && wireMap(row.external_ids);
}

/** What an engine 27+ sends for a pool: GetDefaultAddressSpaces first, every time. */
async function requestPool(pool: string, v6 = false, options: Record<string, string> | null = null) {
  const spaces = await post('IpamDriver.GetDefaultAddressSpaces');
  const reply = await post('IpamDriver.RequestPool', { AddressSpace: String(spaces.body.LocalDefaultAddressSpace), Pool: pool, SubPool: '', Options: options, V6: v6 });
  if (reply.status !== 200) throw new Error(`RequestPool: ${JSON.stringify(reply.body)}`);
  return { poolId: String(reply.body.PoolID), pool: String(reply.body.Pool), data: reply.body.Data };
}

async function requestAddress(poolId: string, address = '', options: Record<string, string> | null = null) {
  return post('IpamDriver.RequestAddress', { PoolID: poolId, Address: address, Options: options });
}

t.test('29: RequestAddress Options carry the container name (and the MAC key): accepted, addresses as before', async (t) => {
  const lease = await requestPool('10.48.0.0/24');
  t.same((await requestAddress(lease.poolId, '', GATEWAY)).body, { Address: '10.48.0.1/24', Data: {} });
  const networkId = hex(32);
  await post('NetworkDriver.CreateNetwork', { NetworkID: networkId, Options: {}, IPv4Data: [{ AddressSpace: 'ovn', Pool: lease.pool, Gateway: '10.48.0.1/24' }], IPv6Data: [] });
  const cases: [string, Record<string, string> | null, string, string][] = [
    ['28 and before: no options', null, '', '10.48.0.2/24'],
    ['29: the container name', { 'com.docker.network.endpoint.name': 'web' }, '', '10.48.0.3/24'],
    ['29: name and MAC', { 'com.docker.network.endpoint.name': 'db', 'com.docker.network.endpoint.macaddress': '02:42:0a:30:00:09' }, '', '10.48.0.4/24'],
    ['29: a long name', { 'com.docker.network.endpoint.name': `c${'x'.repeat(299)}` }, '', '10.48.0.5/24'],
    ['29: --ip with the name', { 'com.docker.network.endpoint.name': 'fixed' }, '10.48.0.50', '10.48.0.50/24'],
  ];
  for (const [what, options, wanted, expected] of cases) {
    const reply = await requestAddress(lease.poolId, wanted, options);
    t.same(reply, { status: 200, body: { Address: expected, Data: {} } }, what);
  }
  // --aux-address comes with Options null; the engine releases every address, gateway included.
  for (const address of ['10.48.0.2', '10.48.0.3', '10.48.0.4', '10.48.0.5', '10.48.0.50', '10.48.0.1']) {
    t.equal((await post('IpamDriver.ReleaseAddress', { PoolID: lease.poolId, Address: address })).status, 200);
  }
  t.equal((await post('IpamDriver.ReleasePool', { PoolID: lease.poolId })).status, 200);
  await post('NetworkDriver.DeleteNetwork', { NetworkID: networkId });
  const tooLong = await requestAddress('docker_pool_10.48.0.0_24/0123456789ab', '', { 'com.docker.network.endpoint.name': 'x'.repeat(1025) });
  t.equal(tooLong.status, 400, 'a name past any real one is a bad body');
});

t.test('an engine asking again for the pool its network has (Pool = the subnet) gets that pool, and the same switch', async (t) => {
  // First run: docker network create --ipam-driver openvswitch (no --subnet), a container.
  const first = await requestPool('');
  t.match(first.pool, /^10\.(1[2-9][0-9]|2[0-5][0-9])\.[0-9]+\.0\/24$/, `a default pool: ${first.pool}`);
  const prefix = first.pool.split('.').slice(0, 3).join('.');
  t.equal((await requestAddress(first.poolId, '', GATEWAY)).body.Address, `${prefix}.1/24`);
  const networkId = hex(32);
  t.equal((await post('NetworkDriver.CreateNetwork', { NetworkID: networkId, Options: {}, IPv4Data: [{ AddressSpace: 'ovn', Pool: first.pool, Gateway: `${prefix}.1/24` }], IPv6Data: [] })).status, 200);
  const before = String((await requestAddress(first.poolId, '', { 'com.docker.network.endpoint.name': 'web' })).body.Address);
  t.equal(before, `${prefix}.2/24`);
  const web = hex(32);
  t.equal((await post('NetworkDriver.CreateEndpoint', { NetworkID: networkId, EndpointID: web, Interface: { Address: before, AddressIPv6: '', MacAddress: '' }, Options: {} })).status, 200);

  // The engine again: it asks for the subnet it had, by name.
  const again = await requestPool(first.pool);
  t.equal(again.pool, first.pool, 'the same pool');
  t.not(again.poolId, first.poolId, 'as a lease of its own');
  t.equal((await requestAddress(again.poolId, '', GATEWAY)).body.Address, `${prefix}.1/24`, 'the same gateway');
  const after = String((await requestAddress(again.poolId, '', { 'com.docker.network.endpoint.name': 'db' })).body.Address);
  t.equal(after, `${prefix}.3/24`, "the running container's address is not given again");
  const db = hex(32);
  t.equal((await post('NetworkDriver.CreateEndpoint', { NetworkID: networkId, EndpointID: db, Interface: { Address: after, AddressIPv6: '', MacAddress: '' }, Options: {} })).status, 200);
  const switchName = `docker_pool_${first.pool.replace('/', '_')}`;
  const [ls] = await select(nb, 'Logical_Switch', [['name', '==', switchName]], ['ports']);
  t.ok(ls, "the network is still on the pool's switch");
  t.equal(engine.nb.networks.findEndpoint(db)?.networkId, networkId, 'the new container is on the same network');
  t.equal(engine.nb.networks.findNetwork(networkId)?.name, switchName);

  // 29 names the container in every endpoint request: a given address (--ip) is the container's even
  // though this lease never sees its network created; one without a name (--aux-address) stays shared.
  const fixed = String((await requestAddress(again.poolId, `${prefix}.50`, { 'com.docker.network.endpoint.name': 'fixed' })).body.Address);
  t.equal(fixed, `${prefix}.50/24`, '--ip after the engine asked again');
  const holders = async () => (await poolIds(switchName)) ?? new Map<string, string>();
  const holderOf = async (ip: string) => [...(await holders())].find(([k]) => k.endsWith(ip))?.[1];
  t.match(await holderOf(`${prefix}.50`), new RegExp(`^${again.poolId.split('/')[1]} [0-9a-f]{8}$`), "held by the new lease as an endpoint's, not as an --aux-address");
  t.equal((await requestAddress(again.poolId, `${prefix}.60`)).status, 200, 'an address without a name while no network is known to this lease');
  t.equal(await holderOf(`${prefix}.60`), 'aux', 'is an --aux-address, shared as every host reserves it');
  t.equal((await post('IpamDriver.ReleaseAddress', { PoolID: again.poolId, Address: `${prefix}.50` })).status, 200);
  t.equal(await holderOf(`${prefix}.50`), undefined, 'the --ip address is freed with its container');
  t.equal((await post('IpamDriver.ReleaseAddress', { PoolID: again.poolId, Address: `${prefix}.60` })).status, 200);
  t.equal(await holderOf(`${prefix}.60`), 'aux', 'the --aux-address stays as long as the pool');

  for (const [id, address, poolId] of [[web, before, first.poolId], [db, after, again.poolId]] as const) {
    await post('NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: id });
    t.equal((await post('IpamDriver.ReleaseAddress', { PoolID: poolId, Address: address.split('/')[0] })).status, 200);
  }
  for (const poolId of [first.poolId, again.poolId]) t.equal((await post('IpamDriver.ReleasePool', { PoolID: poolId })).status, 200);
  await post('NetworkDriver.DeleteNetwork', { NetworkID: networkId });
  t.equal(await poolIds(switchName), undefined, 'both leases released: the pool is gone');
});

t.test('27+ overlap loop: each request without --subnet gets a different pool while the others are held; releasing them frees them', async (t) => {
  // The engine finds the first two overlapping a route of the host, keeps them while it asks again, then releases them.
  const held = [await requestPool(''), await requestPool(''), await requestPool('')];
  const pools = held.map((l) => l.pool);
  t.equal(new Set(pools).size, 3, `three different pools: ${pools.join(', ')}`);
  for (const lease of held) t.ok(await poolIds(`docker_pool_${lease.pool.replace('/', '_')}`), `${lease.pool} is held`);
  const [overlapping1, overlapping2, kept] = held as [typeof held[0], typeof held[0], typeof held[0]];
  for (const lease of [overlapping1, overlapping2]) t.equal((await post('IpamDriver.ReleasePool', { PoolID: lease.poolId })).status, 200);
  for (const lease of [overlapping1, overlapping2]) t.equal(await poolIds(`docker_pool_${lease.pool.replace('/', '_')}`), undefined, `${lease.pool} freed`);
  t.ok(await poolIds(`docker_pool_${kept.pool.replace('/', '_')}`), `${kept.pool} kept`);

  // Freed pools are free for the next network: the lowest comes back first.
  const next = await requestPool('');
  t.equal(next.pool, [overlapping1.pool, overlapping2.pool].sort(byAddress)[0], 'a freed pool is given again');
  for (const lease of [kept, next]) t.equal((await post('IpamDriver.ReleasePool', { PoolID: lease.poolId })).status, 200);
});

function byAddress(a: string, b: string): number {
  const value = (p: string) => p.split('/')[0]!.split('.').reduce((n, o) => n * 256 + Number(o), 0);
  return value(a) - value(b);
}
