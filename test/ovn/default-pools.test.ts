/**
 * Pools chosen by default (issue 10): `docker network create --ipam-driver
 * openvswitch` without --subnet on two hosts at the same instant must give
 * two pools, never one switch for two unrelated networks. A pool asked for
 * by subnet is still joined by every host that asks for it. Two
 * OvsdbClients on one NB ovsdb-server stand for the two hosts.
 */
import t from 'tap';
import { startOvsdbServer, type OvsdbServer } from '../harness/ovsdb-server.js';
import { OvsdbClient } from '../../src/ovsdb/index.js';
import { externalIds } from '../../src/ovn/external-ids.js';
import { Keys, NB_INDEXES, NB_TABLES, nbScope } from '../../src/ovn/keys.js';
import { OvnPools, poolName, type PoolLease } from '../../src/ovn/pools.js';

interface Host {
  chassis: string;
  nb: OvsdbClient;
  pools: OvnPools;
}

let server: OvsdbServer;
const hosts: Host[] = [];

t.before(async () => {
  server = await startOvsdbServer({ schema: 'nb' });
  for (const chassis of ['host-a', 'host-b']) {
    const nb = await OvsdbClient.connect(
      { remote: server.unixRemote, database: 'OVN_Northbound', tables: NB_TABLES, where: nbScope('overlay', chassis), indexes: NB_INDEXES, requestTimeoutMs: 10_000 },
      10_000,
    );
    hosts.push({ chassis, nb, pools: new OvnPools(nb) });
  }
});
t.teardown(async () => {
  await Promise.all(hosts.map((h) => h.nb.close()));
  await server.stop();
});

function requestBoth(pool: string): Promise<PoolLease[]> {
  return Promise.all(hosts.map((h) => h.pools.requestPool({ pool, subPool: '', v6: false, chassis: h.chassis })));
}

/** Pool users (tokens) of the pool named `name`, once every host's replica has `count` of them. */
async function usersSeenByAll(name: string, count: number): Promise<string[][]> {
  return Promise.all(
    hosts.map((h) =>
      h.nb.replica.waitFor(
        () => {
          const row = h.nb.replica.findOne('Address_Set', 'name', name);
          const users = row ? [...externalIds(row).keys()].filter((k) => k.startsWith(Keys.poolUser)) : [];
          return users.length === count ? users : undefined;
        },
        { timeoutMs: 5000, what: `${h.chassis} to see ${count} user(s) of ${name}` },
      ),
    ),
  );
}

t.test('two hosts asking for a default pool at the same instant get two pools, round after round', async (t) => {
  const seen = new Set<string>();
  for (let round = 1; round <= 20; round++) {
    // Both replicas know every pool so far: both hosts see the same first free /24.
    const [a, b] = await requestBoth('');
    t.not(a!.pool, b!.pool, `round ${round}: ${a!.pool} and ${b!.pool}`);
    for (const lease of [a!, b!]) {
      t.notOk(seen.has(lease.pool), `round ${round}: ${lease.pool} was no one's before`);
      seen.add(lease.pool);
      const users = await usersSeenByAll(poolName(lease.pool), 1);
      t.same(users[0], [`${Keys.poolUser}${lease.poolId.split('/')[1]}`], `round ${round}: ${lease.pool} has one user, its own`);
    }
  }
});

t.test('a pool asked for by subnet is joined by both hosts', async (t) => {
  const [a, b] = await requestBoth('10.250.0.0/24');
  t.equal(a!.pool, '10.250.0.0/24');
  t.equal(b!.pool, '10.250.0.0/24');
  t.not(a!.poolId, b!.poolId, 'each host is a user of its own');
  const [users] = await usersSeenByAll(poolName('10.250.0.0/24'), 2);
  t.equal(users!.length, 2, 'one pool, two users');
});

t.test('a default pool skips a subnet someone asked for explicitly', async (t) => {
  // The first /24 of the default range that no pool has yet: the one both hosts would choose next.
  const used = new Set([...hosts[0]!.nb.replica.rows('Address_Set')].map((row) => externalIds(row).get(Keys.pool)));
  let third = 0;
  while (used.has(`10.128.${third}.0/24`)) third++;
  const next = `10.128.${third}.0/24`;
  await hosts[0]!.pools.requestPool({ pool: next, subPool: '', v6: false, chassis: 'host-a' });
  await usersSeenByAll(poolName(next), 1);
  const [a, b] = await requestBoth('');
  t.not(a!.pool, next, 'not the explicit pool');
  t.not(b!.pool, next, 'not the explicit pool');
  t.not(a!.pool, b!.pool, "nor each other's");
});
