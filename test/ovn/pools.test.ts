/**
 * Our IPAM's pools in NB (src/ovn/pools.ts), on a bare NB ovsdb-server with
 * two hosts: pool users, the gateway and the addresses they reserve and
 * release, --ip-range and --aux-address, and a pool with nothing left.
 * Pools chosen by default are in default-pools.test.ts, replies lost
 * mid-request in retries.test.ts.
 */
import t from 'tap';
import { DomainError } from '../../src/errors.js';
import { stripPrefix } from '../../src/net/addressing.js';
import { externalIds } from '../../src/ovn/external-ids.js';
import { Keys } from '../../src/ovn/keys.js';
import { OvnPools, poolName } from '../../src/ovn/pools.js';
import { reservationKey } from '../../src/ovn/records.js';
import { useNbHosts, type NbHost } from '../harness/nb-hosts.js';
import { poolNetwork } from './model-fixture.js';
import { externalIdsOf, rowNamed, until } from './nb-reads.js';

const [a, b] = (await useNbHosts(t, ['host-a', 'host-b'])) as [NbHost, NbHost];
const pools = { a: new OvnPools(a.nb), b: new OvnPools(b.nb) };

function join(p: OvnPools, h: NbHost, pool: string, subPool = '') {
  return p.requestPool({ pool, subPool, v6: false, chassis: h.chassis });
}

async function refusal(p: Promise<unknown>): Promise<DomainError | undefined> {
  return p.then(
    () => undefined,
    (e: unknown) => e as DomainError,
  );
}

t.test('a pool has a user per network; the last one out deletes it with its reservations', async (t) => {
  const first = await join(pools.a, a, '10.91.0.0/24');
  const second = await join(pools.b, b, '10.91.0.0/24');
  const name = poolName('10.91.0.0/24');
  t.equal(first.pool, '10.91.0.0/24');
  t.equal(pools.a.poolOf('10.91.0.0/24'), name, 'our IPAM manages the subnet');
  await pools.a.requestAddress(first.poolId, '', 'endpoint');

  await pools.a.releasePool(first.poolId);
  t.ok(await rowNamed(a.nb, 'Address_Set', name, ['name']), 'the pool stays while it has a user');
  const released = await refusal(pools.a.requestAddress(first.poolId, '', 'endpoint'));
  t.equal(released?.code, 'not-found');
  t.equal(released?.message, `pool ${first.poolId} was released`);

  await pools.b.releasePool(second.poolId);
  t.equal(await rowNamed(a.nb, 'Address_Set', name, ['name']), undefined, 'the last user out deletes it');
  await pools.b.releasePool(second.poolId);
  t.pass('releasing it again changes nothing');
  t.equal(pools.a.poolOf('10.91.0.0/24'), undefined);
  const gone = await refusal(pools.b.requestAddress(second.poolId, '', 'endpoint'));
  t.equal(gone?.message, `pool ${second.poolId} does not exist (released, or never requested)`);
});

t.test('the gateway is the first address, the same for every user; others are given lowest first or as asked', async (t) => {
  const ua = await join(pools.a, a, '10.92.0.0/24');
  const ub = await join(pools.b, b, '10.92.0.0/24');
  t.equal(await pools.a.requestAddress(ua.poolId, '', 'gateway'), '10.92.0.1/24');
  await seenReserved(b, poolName('10.92.0.0/24'), '10.92.0.1');
  t.equal(await pools.b.requestAddress(ub.poolId, '', 'gateway'), '10.92.0.1/24', "host B's network shares it");
  t.equal(await pools.a.requestAddress(ua.poolId, '', 'endpoint'), '10.92.0.2/24');
  t.equal(await pools.a.requestAddress(ua.poolId, '', 'endpoint'), '10.92.0.3/24');
  await pools.a.markNetworkCreated('10.92.0.0/24', a.chassis, 'net92a');
  await pools.b.markNetworkCreated('10.92.0.0/24', b.chassis, 'net92b');
  t.equal(await pools.a.requestAddress(ua.poolId, '10.92.0.10', 'endpoint'), '10.92.0.10/24', '--ip');
  const taken = await refusal(pools.b.requestAddress(ub.poolId, '10.92.0.10', 'endpoint'));
  t.equal(taken?.code, 'conflict');
  t.equal(taken?.message, 'address 10.92.0.10 is already in use in pool 10.92.0.0/24');
  const outside = await refusal(pools.b.requestAddress(ub.poolId, '10.99.0.10', 'endpoint'));
  t.equal(outside?.code, 'invalid');
  t.equal(outside?.message, 'address 10.99.0.10 is not in pool 10.92.0.0/24');
  t.equal((await refusal(pools.b.requestAddress(ub.poolId, '10.92.0.x', 'endpoint')))?.code, 'invalid', 'nor one that does not parse');
  t.equal(pools.a.lowestFree(poolName('10.92.0.0/24'), 1000).length, 254 - 4, 'four of 254 held');
});

t.test('before its network exists, a pool user reserves --aux-address ones: shared, and never released by it', async (t) => {
  const ua = await join(pools.a, a, '10.93.0.0/24');
  const ub = await join(pools.b, b, '10.93.0.0/24');
  const name = poolName('10.93.0.0/24');
  t.equal(await pools.a.requestAddress(ua.poolId, '10.93.0.250', 'endpoint'), '10.93.0.250/24');
  await seenReserved(b, name, '10.93.0.250');
  t.equal(await pools.b.requestAddress(ub.poolId, '10.93.0.250', 'endpoint'), '10.93.0.250/24', "another host's network reserves the same");
  t.equal(pools.a.releasable(ua.poolId, '10.93.0.250'), undefined, 'not one to release');

  await pools.a.markNetworkCreated('10.93.0.0/24', a.chassis, 'net93');
  t.equal(pools.a.poolIdOf(name, a.chassis, 'net93'), ua.poolId, 'the network is now the pool user');
  await pools.a.requestAddress(ua.poolId, '10.93.0.20', 'endpoint');
  const held = pools.a.releasable(ua.poolId, '10.93.0.20');
  t.ok(held?.holder.startsWith(`${ua.poolId.split('/')[1]} `), "an explicit address is now an endpoint's, held by the user");
});

t.test("releaseAddress frees only this user's own reservation, once", async (t) => {
  const ua = await join(pools.a, a, '10.94.0.0/24');
  const ub = await join(pools.b, b, '10.94.0.0/24');
  const name = poolName('10.94.0.0/24');
  const address = await pools.a.requestAddress(ua.poolId, '', 'endpoint');
  const key = reservationKey(address);
  await seenReserved(b, name, address);
  await pools.b.releaseAddress(ub.poolId, address);
  t.ok((await externalIdsOf(a.nb, 'Address_Set', name)).has(key), "another user's release leaves it");
  await pools.a.releaseAddress(ua.poolId, address);
  t.notOk((await externalIdsOf(a.nb, 'Address_Set', name)).has(key), "its user's frees it");
  await pools.a.releaseAddress(ua.poolId, address);
  t.equal(pools.a.freeAddress(name), stripPrefix(address), 'and a second release leaves it free');
  const forged = await refusal(pools.a.releaseAddress('docker_pool_10.94.0.0_24/zzz', address));
  t.equal(forged?.code, 'invalid');
  t.equal(forged?.message, 'invalid PoolID "docker_pool_10.94.0.0_24/zzz"');
});

t.test('--ip-range: addresses come from the range, its edges skipped; every user of the pool must use the same one', async (t) => {
  const ranged = await join(pools.a, a, '10.95.0.0/24', '10.95.0.128/25');
  t.equal(await pools.a.requestAddress(ranged.poolId, '', 'endpoint'), '10.95.0.129/24', 'the range, without its first address');
  const ids = await externalIdsOf(a.nb, 'Address_Set', poolName('10.95.0.0/24'));
  t.equal(ids.get(Keys.poolRange), '10.95.0.128/25');
  const other = await refusal(join(pools.b, b, '10.95.0.0/24'));
  t.equal(other?.code, 'conflict');
  t.equal(other?.message, 'pool 10.95.0.0/24 is already in use with --ip-range 10.95.0.128/25; every network on it must use the same range');
  const outside = await refusal(join(pools.b, b, '10.96.0.0/24', '10.97.0.0/25'));
  t.equal(outside?.code, 'invalid');
  t.equal(outside?.message, '--ip-range 10.97.0.0/25 is not inside the pool 10.96.0.0/24');
  t.equal((await refusal(join(pools.b, b, '10.96.0.0/33')))?.code, 'invalid', 'a pool that does not parse');
});

t.test('a full pool gives the address a warm port keeps ready, then says it is exhausted', async (t) => {
  const lease = await poolNetwork(a, pools.a, '10.98.0.0/29', 'net98');
  const { name } = lease;
  const warm = (await a.warm.create(name, a.chassis, 1, 0))[0];
  t.equal(warm && stripPrefix(warm.ipv4), '10.98.0.2', 'a warm port at the lowest free address');
  const given = [];
  for (let i = 0; i < 4; i++) given.push(await pools.a.requestAddress(lease.poolId, '', 'endpoint'));
  t.same(given, ['10.98.0.3/29', '10.98.0.4/29', '10.98.0.5/29', '10.98.0.6/29'], 'free addresses first');
  t.equal(await pools.a.requestAddress(lease.poolId, '', 'endpoint'), '10.98.0.2/29', "then the warm port's");
  t.equal(await rowNamed(a.nb, 'Logical_Switch_Port', warm!.name, ['name']), undefined, 'whose port goes with it');
  const full = await refusal(pools.a.requestAddress(lease.poolId, '', 'endpoint'));
  t.equal(full?.code, 'exhausted');
  t.equal(full?.message, 'no free address left in pool 10.98.0.0/29');
});

/** Once host `h`'s replica shows `address` reserved in pool `name`. */
function seenReserved(h: NbHost, name: string, address: string): Promise<true> {
  const reserved = () => externalIds(h.nb.replica.findOne('Address_Set', 'name', name) ?? { _uuid: '' }).has(reservationKey(address));
  return until(h.nb, () => (reserved() ? true : undefined), `${h.chassis} to see ${address} reserved`);
}
