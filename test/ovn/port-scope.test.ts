/**
 * Which ports a host replicates (src/ovn/port-scope.ts), on a bare NB
 * ovsdb-server with two hosts as the driver connects them: its own, and
 * those of the switches its networks use, from the moment a network or pool
 * user of its own is there until the last one is gone.
 */
import t from 'tap';
import { OvsdbClient } from '../../src/ovsdb/index.js';
import { Keys, NB_TABLES, OWNER } from '../../src/ovn/keys.js';
import { OvnPools } from '../../src/ovn/pools.js';
import { stripPrefix } from '../../src/net/addressing.js';
import { connectNb, useNbHosts, type NbHost } from '../harness/nb-hosts.js';
import { endpoint, networkSpec, poolNetwork } from './model-fixture.js';
import { externalIdsOf } from './nb-reads.js';
import { externalIds } from '../../src/ovn/external-ids.js';

const [a, b] = (await useNbHosts(t, ['host-a', 'host-b'])) as [NbHost, NbHost];
const poolsA = new OvnPools(a.nb);
const poolsB = new OvnPools(b.nb);

function portNames(h: NbHost): string[] {
  return [...h.nb.replica.rows('Logical_Switch_Port')].map((p) => String(p.name)).sort();
}

t.test("a host holds another host's ports only while a network or pool of its own is on their switch", async (t) => {
  const leaseB = await poolNetwork(b, poolsB, '10.81.0.0/24', 'nb81');
  const theirs = await endpoint(b, 'nb81', 'b'.repeat(64), '10.81.0.5/24');
  await b.networks.ensureNetwork(networkSpec(b, 82, 'nb82'));
  await endpoint(b, 'nb82', 'c'.repeat(64), '10.82.0.5/24');
  // Host A sees B's switches (rows of ours are all replicated) but none of their ports.
  await a.nb.replica.waitFor(() => a.nb.replica.findOne('Logical_Switch', 'name', 'nb82'), { timeoutMs: 5000, what: 'switch nb82 on host A' });
  t.same(portNames(a), [], "no port of another host's switches");

  // Host A takes the pool: from RequestPool on, the switch's ports are A's too.
  const leaseA = await poolsA.requestPool({ pool: '10.81.0.0/24', subPool: '', v6: false, chassis: a.chassis });
  await a.nb.conditionsSettled(5000);
  t.ok(a.nb.replica.findOne('Logical_Switch_Port', 'name', theirs.name), "a pool user of A's brings the pool's switch's ports");
  const gateway = stripPrefix(await poolsA.requestAddress(leaseA.poolId, '', 'gateway'));
  await a.networks.ensureNetwork({ ...networkSpec(a, 0, 'na81'), ipv4: [{ subnet: leaseA.pool, gateway }], pools: { v4: leaseB.name } });
  await poolsA.markNetworkCreated(leaseA.pool, a.chassis, 'na81');
  const mine = await endpoint(a, 'na81', 'a'.repeat(64), '10.81.0.6/24');
  t.notOk(a.nb.replica.findOne('Logical_Switch_Port', 'name', 'c'.repeat(64)), 'a switch A has nothing on stays out');

  // A's network goes, then its pool user: B's ports leave A's replica, A's own endpoint stays (it is A's).
  await a.networks.deleteNetwork('na81');
  t.ok(a.nb.replica.findOne('Logical_Switch_Port', 'name', theirs.name), 'while A still uses the pool, the ports stay');
  await poolsA.releasePool(leaseA.poolId);
  await a.nb.conditionsSettled(5000);
  t.notOk(a.nb.replica.findOne('Logical_Switch_Port', 'name', theirs.name), "without a network or pool user of A's, B's ports leave");
  t.ok(a.nb.replica.findOne('Logical_Switch_Port', 'name', mine.name), "A's own port stays, wherever it is");
  t.ok(b.nb.replica.findOne('Logical_Switch_Port', 'name', theirs.name), "B's replica keeps its own");
});

t.test('every port the driver makes names its switch', async (t) => {
  const pool = await poolNetwork(b, poolsB, '10.83.0.0/24', 'nb83');
  const ep = await endpoint(b, 'nb83', 'd'.repeat(64), '10.83.0.5/24');
  const warm = (await b.warm.create(pool.name, b.chassis, 1, 0))[0];
  t.equal((await externalIdsOf(b.nb, 'Logical_Switch_Port', ep.name)).get(Keys.switch), pool.name, 'an endpoint');
  t.equal((await externalIdsOf(b.nb, 'Logical_Switch_Port', `${pool.name}-gw`)).get(Keys.switch), pool.name, "the switch's gateway port");
  t.equal((await externalIdsOf(b.nb, 'Logical_Switch_Port', warm!.name)).get(Keys.switch), pool.name, 'a warm port');
});

t.test("ports an older driver made without the switch's name get it once their switch is this host's", async (t) => {
  // An unscoped client writes as an older driver did: owner key, no switch name; and a port of another tenant.
  const raw = await OvsdbClient.connect({ remote: b.nb.currentRemote!, database: 'OVN_Northbound', tables: NB_TABLES }, 5000);
  t.teardown(() => raw.close());
  const pool = await poolNetwork(b, poolsB, '10.84.0.0/24', 'nb84');
  await raw.transaction((tx) => {
    const old = tx.insert('Logical_Switch_Port', {
      name: 'old-port',
      addresses: ['0a:58:0a:54:00:07 10.84.0.7'],
      external_ids: new Map([[Keys.owner, OWNER], [Keys.chassis, 'host-b'], [Keys.ipv4, '10.84.0.7/24']]),
    });
    const tenant = tx.insert('Logical_Switch_Port', { name: 'tenant-port', external_ids: new Map([['owner', 'someone-else']]) });
    tx.mutate('Logical_Switch', [['name', '==', pool.name]], [['ports', 'insert', [old, tenant]]]);
  });
  await poolNetwork(a, poolsA, '10.84.0.0/24', 'na84');
  const keyed = await a.nb.replica.waitFor(() => a.nb.replica.findOne('Logical_Switch_Port', 'name', 'old-port'), { timeoutMs: 5000, what: 'the older port on host A' });
  t.equal(keyed.external_ids instanceof Map && keyed.external_ids.get(Keys.switch), pool.name, 'it names its switch now');
  t.notOk((await externalIdsOf(raw, 'Logical_Switch_Port', 'tenant-port')).has(Keys.switch), "another tenant's port is left as it is");
  t.notOk(a.nb.replica.findOne('Logical_Switch_Port', 'name', 'tenant-port'), 'and stays out of the replica');

  // A host still on the older driver adds a port to the switch, now in A's scope.
  await raw.transaction((tx) => {
    const later = tx.insert('Logical_Switch_Port', { name: 'old-port-2', external_ids: new Map([[Keys.owner, OWNER], [Keys.chassis, 'host-c']]) });
    tx.mutate('Logical_Switch', [['name', '==', pool.name]], [['ports', 'insert', [later]]]);
  });
  const later = await a.nb.replica.waitFor(() => a.nb.replica.findOne('Logical_Switch_Port', 'name', 'old-port-2'), { timeoutMs: 5000, what: 'the later older port on host A' });
  t.equal(externalIds(later).get(Keys.switch), pool.name, 'a port of an older driver joining later is keyed too');
});

t.test('a host connecting anew replicates the ports of its switches from the start', async (t) => {
  await poolNetwork(a, poolsA, '10.85.0.0/24', 'na85');
  await poolNetwork(b, poolsB, '10.85.0.0/24', 'nb85');
  const theirs = await endpoint(b, 'nb85', 'f'.repeat(64), '10.85.0.9/24');
  const again = await connectNb(a.nb.currentRemote!, a.chassis);
  t.teardown(() => again.close());
  await again.conditionsSettled(5000);
  t.ok(again.replica.findOne('Logical_Switch_Port', 'name', theirs.name), "another host's port on A's switch");
  t.notOk(again.replica.findOne('Logical_Switch_Port', 'name', 'c'.repeat(64)), 'none of a switch A has nothing on');
});
