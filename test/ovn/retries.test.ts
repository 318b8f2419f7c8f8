/**
 * Retries after an unknown outcome (issue 10): a transaction whose reply is
 * lost has committed, and `transaction()` re-runs its closure after the
 * reconnect. Each closure must find its own earlier effect and return it,
 * not make a second one. Host A talks to a real NB ovsdb-server through a
 * proxy that cuts the connection between the commit and the reply
 * (harness/cut-proxy.ts); host B talks to it directly, and reads what the
 * server holds.
 */
import t, { type Test } from 'tap';
import { commentMatches, startCutProxy, type Cut, type CutProxy } from '../harness/cut-proxy.js';
import { startOvsdbServer, type OvsdbServer } from '../harness/ovsdb-server.js';
import { OvsdbClient, silentLogger } from '../../src/ovsdb/index.js';
import { stripPrefix } from '../../src/net/addressing.js';
import { Keys, NB_INDEXES, NB_TABLES, nbScope } from '../../src/ovn/keys.js';
import { OvnNetworks } from '../../src/ovn/networks.js';
import { OvnPools, poolName } from '../../src/ovn/pools.js';
import { reservationKey, warmHolder, warmPortOf } from '../../src/ovn/records.js';
import { portSetName } from '../../src/ovn/port-sets.js';
import { OvnWarmPorts } from '../../src/ovn/warm-ports.js';
import { PortScope } from '../../src/ovn/port-scope.js';
import { networkSpec, poolNetwork } from './model-fixture.js';
import { wireMap, wireSet } from './nb-reads.js';

interface Host {
  chassis: string;
  nb: OvsdbClient;
  pools: OvnPools;
  warm: OvnWarmPorts;
  networks: OvnNetworks;
}

let server: OvsdbServer;
let proxy: CutProxy;
let a: Host;
let b: Host;
const clients: OvsdbClient[] = [];

async function host(chassis: string, remote: string): Promise<Host> {
  const nb = await OvsdbClient.connect(
    {
      remote,
      database: 'OVN_Northbound',
      tables: NB_TABLES,
      where: nbScope('overlay', chassis),
      indexes: NB_INDEXES,
      requestTimeoutMs: 10_000,
      backoff: { initialMs: 20, maxMs: 200 },
    },
    10_000,
  );
  clients.push(nb);
  new PortScope(nb, chassis, silentLogger).start();
  const pools = new OvnPools(nb);
  return { chassis, nb, pools, warm: new OvnWarmPorts(nb, pools), networks: new OvnNetworks(nb) };
}

t.before(async () => {
  server = await startOvsdbServer({ schema: 'nb', tcp: true });
  proxy = await startCutProxy(server.tcpRemote!);
  a = await host('host-a', proxy.remote);
  b = await host('host-b', server.unixRemote);
});
t.teardown(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await proxy.close();
  await server.stop();
});

/** Host `h` makes network `net-<n>` of Docker's IPAM on 10.<n>.0.0/24; returns its port set's name. */
async function dockerIpamNetwork(h: Host, n: number): Promise<string> {
  await h.networks.ensureNetwork(networkSpec(h, n, `net-${n}`));
  return portSetName(`net-${n}`);
}

/** Cut the next transact whose comment matches `pattern` while `work` runs; both outcomes, settled. */
async function cutDuring<T>(
  pattern: RegExp,
  work: () => Promise<T>,
  meanwhile?: () => Promise<void>,
): Promise<{ cut: Cut; value?: T; error?: Error }> {
  const armed = proxy.arm({ match: commentMatches(pattern), ...(meanwhile ? { meanwhile } : {}) });
  const outcome = await work().then(
    (value) => ({ value }),
    (error: unknown) => ({ error: error as Error }),
  );
  return { cut: await armed, ...outcome };
}

/** The lost reply was a commit: every operation succeeded on the server. */
function committed(t: Test, cut: Cut): void {
  const result = cut.reply.result;
  t.ok(Array.isArray(result) && !result.some((r) => r !== null && typeof r === 'object' && 'error' in r), 'the transaction whose reply was lost committed');
}

/** What the server holds, read over host B's own connection (not from a replica). */
interface NbState {
  /** Address_Set name -> its external_ids. */
  sets: Map<string, Map<string, string>>;
  /** Logical_Switch name -> the names of its ports. */
  switches: Map<string, string[]>;
  /** The name of every Logical_Switch_Port, on a switch or not. */
  ports: string[];
}

async function nbState(): Promise<NbState> {
  const tx = b.nb.newTransaction();
  tx.select('Address_Set', [], ['name', 'external_ids']);
  tx.select('Logical_Switch', [], ['name', 'ports']);
  tx.select('Logical_Switch_Port', [], ['_uuid', 'name']);
  const result = await b.nb.transact(tx);
  const uuidOf = (ref: unknown) => String((ref as [string, string])[1]);
  const portNames = new Map(result.rowsOf(2).map((row) => [uuidOf(row._uuid), String(row.name)]));
  return {
    sets: new Map(result.rowsOf(0).map((row) => [String(row.name), wireMap(row.external_ids)])),
    switches: new Map(result.rowsOf(1).map((row) => [String(row.name), wireSet(row.ports).map((ref) => portNames.get(uuidOf(ref)) ?? '?')])),
    ports: [...portNames.values()],
  };
}

/** external_ids of the pool (or port set). */
async function setIds(name: string): Promise<Map<string, string>> {
  return (await nbState()).sets.get(name) ?? new Map<string, string>();
}

/** Addresses (without prefix) held by `holder`s that pass `test`. */
async function heldBy(name: string, test: (holder: string) => boolean): Promise<string[]> {
  return [...(await setIds(name))].filter(([k, v]) => k.startsWith(Keys.poolIp) && test(v)).map(([k]) => k.slice(Keys.poolIp.length));
}

async function portsOnSwitch(switchName: string): Promise<string[]> {
  return (await nbState()).switches.get(switchName) ?? [];
}

async function lspsNamed(name: string): Promise<number> {
  return (await nbState()).ports.filter((n) => n === name).length;
}

async function lspCount(): Promise<number> {
  return (await nbState()).ports.length;
}


t.test('takeOverWarm: a full pool request whose reply is lost takes one warm port, not two', async (t) => {
  const pool = await poolNetwork(a, a.pools, '10.201.0.0/29', 'net-201');
  // .1 gateway; warm ports at .2 and .3; endpoints at .4 to .6: nothing left but the warm ports.
  const warm = [(await a.warm.create(pool.name, a.chassis, 1, 0))[0], (await a.warm.create(pool.name, a.chassis, 1, 0))[0]];
  t.ok(warm[0] && warm[1], 'two warm ports');
  for (let i = 0; i < 3; i++) await a.pools.requestAddress(pool.poolId, '', 'endpoint');
  t.equal(a.pools.freeAddress(pool.name), undefined, 'no free address but the warm ports');
  const taker = await a.pools.requestPool({ pool: '10.201.0.0/29', subPool: '', v6: false, chassis: a.chassis });
  const token = taker.poolId.split('/')[1]!;

  const { cut, value, error } = await cutDuring(/take over a warm port/, () => a.pools.requestAddress(taker.poolId, '', 'endpoint'));
  committed(t, cut);
  t.equal(error, undefined, 'the request succeeds');
  const mine = await heldBy(pool.name, (h) => h.startsWith(`${token} `));
  t.equal(mine.length, 1, 'the endpoint holds exactly one address');
  t.equal(value && stripPrefix(value), mine[0], 'the address it was given');
  const stillWarm = await heldBy(pool.name, (h) => warmPortOf(h) !== undefined);
  t.equal(stillWarm.length, 1, 'the other warm port keeps its address');
  const ports = await portsOnSwitch(pool.name);
  t.equal(warm.filter((p) => p && ports.includes(p.name)).length, 1, 'only the taken-over port left the switch');
  t.equal((await heldBy(pool.name, () => true)).length, 6, 'every address of the /29 is held by someone: none leaked, none freed');
});

t.test('requestAddress: --ip of a warm port\'s address whose reply is lost gets that address', async (t) => {
  const pool = await poolNetwork(a, a.pools, '10.202.0.0/29', 'net-202');
  const port = (await a.warm.create(pool.name, a.chassis, 1, 0))[0];
  t.equal(port && stripPrefix(port.ipv4), '10.202.0.2', 'a warm port at .2');

  const { cut, value, error } = await cutDuring(/take over a warm port/, () => a.pools.requestAddress(pool.poolId, '10.202.0.2', 'endpoint'));
  committed(t, cut);
  t.equal(error?.message, undefined, 'no "already in use" after the lost reply');
  t.equal(value, '10.202.0.2/29', 'the address asked for');
  t.same(await heldBy(pool.name, (h) => h.startsWith(`${pool.token} `)), ['10.202.0.2'], 'held by the pool user, once');
  t.notOk((await portsOnSwitch(pool.name)).includes(port!.name), 'the warm port is gone');
});

t.test('requestAddress: a dynamic request whose reply is lost reserves one address', async (t) => {
  const pool = await poolNetwork(a, a.pools, '10.203.0.0/24', 'net-203');
  const { cut, value, error } = await cutDuring(/RequestAddress/, () => a.pools.requestAddress(pool.poolId, '', 'endpoint'));
  committed(t, cut);
  t.equal(error, undefined, 'the request succeeds');
  t.same(await heldBy(pool.name, (h) => h.startsWith(`${pool.token} `)), [value && stripPrefix(value)], 'one reservation, the one returned');
});

t.test('claim: a claim whose reply is lost returns true, and the claimer holds the address', async (t) => {
  const pool = await poolNetwork(a, a.pools, '10.204.0.0/24', 'net-204');
  const port = (await a.warm.create(pool.name, a.chassis, 1, 0))[0];
  if (!port) throw new Error('no warm port');
  const holder = `${pool.token} 0badcafe`;

  const { cut, value, error } = await cutDuring(/claim warm port/, () => a.warm.claim(port, holder));
  committed(t, cut);
  t.equal(error, undefined, 'no error');
  t.equal(value, true, 'claim says it succeeded');
  t.equal((await setIds(pool.name)).get(reservationKey(port.ipv4)), holder, "the holder is the claimer's");
  t.equal(a.warm.find(port.name)?.state, 'claimed', 'the port is claimed');
});

t.test('create: warm-port creation on a pool whose reply is lost makes one port', async (t) => {
  const pool = await poolNetwork(a, a.pools, '10.205.0.0/24', 'net-205');
  const before = (await lspCount());
  const { cut, value: port, error } = await cutDuring(/warm port\(s\) for docker_pool/, async () => (await a.warm.create(pool.name, a.chassis, 1, 0))[0]);
  committed(t, cut);
  t.equal(error?.message, undefined, 'no error');
  t.ok(port, 'the port is returned');
  const warm = await heldBy(pool.name, (h) => warmPortOf(h) !== undefined);
  t.same(warm, [port && stripPrefix(port.ipv4)], 'one address held as warm, the port\'s');
  t.equal((await setIds(pool.name)).get(reservationKey(warm[0] ?? '')), port && warmHolder(port.name), 'by that port');
  if (port) t.equal(await lspsNamed(port.name), 1, 'one LSP with its name');
  const onSwitch = (await portsOnSwitch(pool.name)).filter((name) => name === port?.name);
  t.equal(onSwitch.length, 1, 'on the switch');
  t.equal((await lspCount()), before + 1, 'one LSP more in NB: no orphan');
});

t.test('create: a batch of warm ports whose reply is lost makes each port once', async (t) => {
  const pool = await poolNetwork(a, a.pools, '10.208.0.0/24', 'net-208');
  const before = await lspCount();
  const { cut, value: ports, error } = await cutDuring(/3 warm port\(s\) for docker_pool/, () => a.warm.create(pool.name, a.chassis, 3, 0));
  committed(t, cut);
  t.equal(error?.message, undefined, 'no error');
  t.equal(ports?.length, 3, 'the three ports are returned');
  t.same((await heldBy(pool.name, (h) => warmPortOf(h) !== undefined)).sort(), (ports ?? []).map((p) => stripPrefix(p.ipv4)).sort(), 'their addresses held as warm');
  for (const port of ports ?? []) t.equal(await lspsNamed(port.name), 1, `one LSP named ${port.name.slice(0, 8)}…`);
  t.equal(await lspCount(), before + 3, 'three LSPs more in NB: no orphan');
});

t.test('create: warm-port creation on a port set whose reply is lost makes one port', async (t) => {
  const set = await dockerIpamNetwork(a, 206);
  const before = (await lspCount());
  const { cut, value: port, error } = await cutDuring(/warm port\(s\) for network docker_ports_/, async () => (await a.warm.create(set, a.chassis, 1, 0))[0]);
  committed(t, cut);
  t.equal(error?.message, undefined, 'no error');
  t.ok(port, 'the port is returned');
  t.same(await heldBy(set, (h) => warmPortOf(h) !== undefined), [port && stripPrefix(port.ipv4)], 'one address held as warm, the port\'s');
  if (port) t.equal(await lspsNamed(port.name), 1, 'one LSP with its name');
  t.equal((await lspCount()), before + 1, 'one LSP more in NB: no orphan');
});

t.test('releaseAddress: a release whose reply is lost frees the address and keeps the reservation another host made meanwhile', async (t) => {
  const pool = await poolNetwork(a, a.pools, '10.207.0.0/24', 'net-207a');
  const other = await poolNetwork(b, b.pools, '10.207.0.0/24', 'net-207b');
  const address = await a.pools.requestAddress(pool.poolId, '', 'endpoint');
  const key = reservationKey(address);
  const otherToken = other.token;

  const { cut, error } = await cutDuring(
    /ReleaseAddress/,
    () => a.pools.releaseAddress(pool.poolId, address),
    async () => {
      t.notOk((await setIds(pool.name)).has(key), 'the release committed: the address is free');
      await b.nb.replica.waitFor(() => (b.pools.freeAddress(pool.name) === stripPrefix(address) ? true : undefined), {
        timeoutMs: 5000,
        what: 'host B to see the address free',
      });
      t.equal(await b.pools.requestAddress(other.poolId, address, 'endpoint'), address, 'host B reserves it meanwhile');
    },
  );
  committed(t, cut);
  t.equal(error, undefined, 'the release succeeds');
  t.ok((await setIds(pool.name)).get(key)?.startsWith(`${otherToken} `), "host B's reservation is kept");
});

t.test('requestPool: a default pool request whose reply is lost makes one pool', async (t) => {
  const before = (await nbState()).sets.size;
  const { cut, value: lease, error } = await cutDuring(/RequestPool/, () =>
    a.pools.requestPool({ pool: '', subPool: '', v6: false, chassis: a.chassis }),
  );
  committed(t, cut);
  t.equal(error, undefined, 'the request succeeds');
  const { sets } = await nbState();
  t.equal(sets.size, before + 1, 'one pool more');
  const token = lease?.poolId.split('/')[1];
  const users = [...sets].filter(([, ids]) => ids.has(`${Keys.poolUser}${token}`));
  t.same(users.map(([name]) => name), [lease && poolName(lease.pool)], 'the user is in the pool returned, only');
});

t.test('recycle and rewarm: a kept port whose reply is lost is reported kept, then warm', async (t) => {
  const pool = await poolNetwork(a, a.pools, '10.208.0.0/24', 'net-208');
  const port = (await a.warm.create(pool.name, a.chassis, 1, 0))[0];
  if (!port) throw new Error('no warm port');
  t.ok(await a.warm.claim(port, `${pool.token} 0badcafe`), 'claimed');
  await a.warm.adopt(port, 'net-208', 'ep-208');

  const recycled = await cutDuring(/DeleteEndpoint ep-208 keeps its port warm/, () => a.warm.recycle('ep-208', a.chassis, pool.name));
  committed(t, recycled.cut);
  t.equal(recycled.error, undefined, 'recycle: no error');
  t.equal(recycled.value?.name, port.name, 'recycle returns the port it kept');
  t.equal(recycled.value?.state, 'recycled', 'as recycled');

  const rewarmed = await cutDuring(/ReleaseAddress keeps/, () => a.warm.rewarm(recycled.value ?? port));
  committed(t, rewarmed.cut);
  t.equal(rewarmed.value, true, 'rewarm says it succeeded');
  t.equal((await setIds(pool.name)).get(reservationKey(port.ipv4)), warmHolder(port.name), 'the port holds its address as warm');
});

t.test("recycle: an endpoint's own port on a port set whose reply is lost is reported warm", async (t) => {
  const set = await dockerIpamNetwork(a, 209);
  await a.networks.ensureEndpoint({ networkId: 'net-209', endpointId: 'ep-209', ipv4: '10.209.0.2/24', chassis: a.chassis });
  const endpoint = a.networks.findEndpoint('ep-209');
  if (!endpoint) throw new Error('no endpoint');

  const { cut, value, error } = await cutDuring(/DeleteEndpoint ep-209 keeps its port warm/, () => a.warm.recycle('ep-209', a.chassis, set));
  committed(t, cut);
  t.equal(error, undefined, 'no error');
  t.equal(value?.name, endpoint.name, "recycle returns the endpoint's port");
  t.equal(value?.state, 'warm', 'warm at once');
  t.equal((await setIds(set)).get(reservationKey('10.209.0.2')), warmHolder(endpoint.name), 'the port set holds its address as warm');
});
