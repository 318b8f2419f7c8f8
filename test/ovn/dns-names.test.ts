/**
 * DNS names on a switch (src/ovn/dns-names.ts; issue 9): a name belongs to
 * every endpoint that publishes it, on any host. Once the switch spans
 * hosts, each port records its names and the switch's DNS row holds them;
 * before, nothing is written (Docker's embedded DNS answers). Two
 * hosts' networks on one pool's switch, on a bare NB ovsdb-server; no OVN
 * daemons are needed.
 */
import t from 'tap';
import { externalIds } from '../../src/ovn/external-ids.js';
import { Keys } from '../../src/ovn/keys.js';
import { OvnPools } from '../../src/ovn/pools.js';
import { portSetName } from '../../src/ovn/port-sets.js';
import type { RowChange } from '../../src/ovsdb/index.js';
import type { NbHost } from '../harness/nb-hosts.js';
import { externalIdsOf, rowNamed, select, until, wireMap, wireSet } from './nb-reads.js';
import { endpoint, networkSpec, poolNetwork, useSharedSwitch } from './model-fixture.js';

const { a, b, sharedNetwork, endpointPair } = await useSharedSwitch(t);

/** The host's replica has a DNS record of `name`. */
function untilRecord(h: NbHost, name: string): Promise<true> {
  const has = () => [...h.nb.replica.rows('DNS')].some((r) => r.records instanceof Map && r.records.has(name));
  return until(h.nb, () => (has() ? true : undefined), `a record of ${name}`);
}

/** The switch's DNS records, read from the server. */
async function dnsRecords(switchName: string): Promise<Record<string, string>> {
  const [ls] = await select(a.nb, 'Logical_Switch', [['name', '==', switchName]], ['dns_records']);
  const out: Record<string, string> = {};
  for (const [, uuid] of wireSet(ls?.dns_records) as [string, string][]) {
    const [dns] = await select(a.nb, 'DNS', [['_uuid', '==', uuid]], ['records']);
    for (const [name, value] of wireMap(dns?.records)) out[name] = value;
  }
  return out;
}

t.test("one name on two hosts answers with both addresses; removing one endpoint keeps the other's", async (t) => {
  const { switchName } = await endpointPair(15, 'dns');
  t.same(await a.networks.publishNames([{ endpointId: 'dns-a', names: ['web', 'only-a'] }], a.chassis), { published: ['dns-a'], local: [] });
  await untilRecord(b, 'only-a');
  t.same((await b.networks.publishNames([{ endpointId: 'dns-b', names: ['Web', 'only-b'] }], b.chassis)).published, ['dns-b']);
  t.same(await dnsRecords(switchName), { web: '10.15.0.2 10.15.0.3', 'only-a': '10.15.0.2', 'only-b': '10.15.0.3' });
  // Publishing again (a driver restart's sync, another host joining) changes no row: this client hears of
  // its own changes before the transaction's reply.
  const portChanges: string[] = [];
  const onChange = (changes: RowChange[]) => portChanges.push(...changes.filter((c) => c.table === 'Logical_Switch_Port' || c.table === 'DNS').map((c) => c.uuid));
  a.nb.on('change', onChange);
  await a.networks.publishNames([{ endpointId: 'dns-a', names: ['web', 'only-a'] }], a.chassis);
  a.nb.off('change', onChange);
  t.same(await dnsRecords(switchName), { web: '10.15.0.2 10.15.0.3', 'only-a': '10.15.0.2', 'only-b': '10.15.0.3' });
  t.same(portChanges, [], 'publishing the same names again changes nothing');

  await untilRecord(a, 'only-b');
  t.equal(await a.networks.deleteEndpoint('dns-a'), true);
  t.same(await dnsRecords(switchName), { web: '10.15.0.3', 'only-b': '10.15.0.3' }, "host A's names leave, host B's address stays");
  await until(b.nb, () => (b.networks.findEndpoint('dns-a') ? undefined : true));
  t.equal(await b.networks.deleteEndpoint('dns-b'), true);
  t.same(await dnsRecords(switchName), {}, 'the last publisher takes the name with it');
});

t.test('names a port no longer publishes leave its address behind', async (t) => {
  const { netA, switchName } = await endpointPair(16, 'rename-other');
  await endpoint(a, netA, 'rename-a', '10.16.0.4/24');
  await a.networks.publishNames([{ endpointId: 'rename-a', names: ['old-name', 'kept'] }], a.chassis);
  await a.networks.publishNames([{ endpointId: 'rename-a', names: ['kept', 'new-name'] }], a.chassis);
  t.same(await dnsRecords(switchName), { kept: '10.16.0.4', 'new-name': '10.16.0.4' });
});

t.test('two hosts publishing one name at once both end up in its record', async (t) => {
  const { netA, switchName } = await endpointPair(17, 'race-dns');
  // A DNS row exists already: both publishers mutate it (the row's creation has a guard of its own).
  await endpoint(a, netA, 'race-dns-0', '10.17.0.9/24');
  await a.networks.publishNames([{ endpointId: 'race-dns-0', names: ['other'] }], a.chassis);
  await untilRecord(b, 'other');
  const [pa, pb] = await Promise.all([
    a.networks.publishNames([{ endpointId: 'race-dns-a', names: ['db'] }], a.chassis),
    b.networks.publishNames([{ endpointId: 'race-dns-b', names: ['db'] }], b.chassis),
  ]);
  t.same([pa.published, pb.published], [['race-dns-a'], ['race-dns-b']]);
  t.same(await dnsRecords(switchName), { other: '10.17.0.9', db: '10.17.0.2 10.17.0.3' });
});

t.test('two hosts creating the DNS row at once both end up in the record', async (t) => {
  const { switchName } = await endpointPair(18, 'first-dns');
  await Promise.all([
    a.networks.publishNames([{ endpointId: 'first-dns-a', names: ['db'] }], a.chassis),
    b.networks.publishNames([{ endpointId: 'first-dns-b', names: ['db'] }], b.chassis),
  ]);
  t.same(await dnsRecords(switchName), { db: '10.18.0.2 10.18.0.3' });
});

t.test("a port kept warm when its endpoint goes takes its names, not the other publisher's", async (t) => {
  const networkId = 'warm19';
  await b.networks.ensureNetwork(networkSpec(b, 19, networkId, false));
  await endpoint(b, networkId, 'recycle-1', '10.19.0.2/24');
  await endpoint(b, networkId, 'recycle-2', '10.19.0.3/24');
  // A port of host A on it: the switch spans hosts, so its names go to its DNS row.
  await until(a.nb, () => a.networks.findNetwork(networkId));
  await endpoint(a, networkId, 'recycle-other', '10.19.0.9/24');
  await until(b.nb, () => b.networks.findEndpoint('recycle-other'));
  await b.networks.publishNames(
    [
      { endpointId: 'recycle-1', names: ['svc', 'one'] },
      { endpointId: 'recycle-2', names: ['svc'] },
    ],
    b.chassis,
  );
  t.same(await dnsRecords(networkId), { svc: '10.19.0.2 10.19.0.3', one: '10.19.0.2' }, 'one batch, both addresses');
  const kept = await b.warm.recycle('recycle-1', b.chassis, portSetName(networkId));
  t.equal(kept?.state, 'warm', 'the port is warm again');
  t.same(await dnsRecords(networkId), { svc: '10.19.0.3' });
});

t.test('one host removing its endpoint while another publishes the name keeps only the publisher', async (t) => {
  const { switchName } = await endpointPair(20, 'leave');
  await a.networks.publishNames([{ endpointId: 'leave-a', names: ['api'] }], a.chassis);
  await untilRecord(b, 'api');
  // Each builds from a replica without the other's change: the guard on the records makes the later one re-run.
  await Promise.all([a.networks.deleteEndpoint('leave-a'), b.networks.publishNames([{ endpointId: 'leave-b', names: ['api'] }], b.chassis)]);
  t.same(await dnsRecords(switchName), { api: '10.20.0.3' });
});

/** The names a port recorded (Keys.dnsNames), read from the server. */
async function recordedNames(h: NbHost, endpointId: string): Promise<string | undefined> {
  const name = h.networks.findEndpoint(endpointId)?.name;
  return name ? (await externalIdsOf(h.nb, 'Logical_Switch_Port', name)).get(Keys.dnsNames) : undefined;
}

/** The switch's DNS rows (uuids), read from the server. */
async function dnsRows(switchName: string): Promise<unknown[]> {
  return wireSet((await rowNamed(a.nb, 'Logical_Switch', switchName, ['dns_records']))?.dns_records);
}

/** The next switches `h`'s model reports another host's port joining. */
function nextJoin(h: NbHost): { joined: Promise<string[]>; stop: () => void } {
  let stop = () => undefined as void;
  const joined = new Promise<string[]>((resolve) => {
    stop = h.networks.onOtherHostsJoining(h.chassis, (switches) => {
      stop();
      resolve(switches);
    });
  });
  return { joined, stop: () => stop() };
}

t.test('on a switch only one host uses, publishing writes nothing: no names on the ports, no DNS row', async (t) => {
  const networkId = 'solo21';
  await a.networks.ensureNetwork(networkSpec(a, 21, networkId, false));
  await endpoint(a, networkId, 'solo-1', '10.21.0.2/24');
  await endpoint(a, networkId, 'solo-2', '10.21.0.3/24');
  // A warm port of this host and the gateway's localport do not make it span hosts.
  t.ok((await a.warm.create(portSetName(networkId), a.chassis, 1, 0))[0], 'a warm port of this host');
  t.same(
    await a.networks.publishNames(
      [
        { endpointId: 'solo-1', names: ['Web', 'svc'] },
        { endpointId: 'solo-2', names: ['svc'] },
      ],
      a.chassis,
    ),
    { published: [], local: ['solo-1', 'solo-2'] },
  );
  t.equal(await recordedNames(a, 'solo-1'), undefined, 'no names on the ports');
  t.equal(await recordedNames(a, 'solo-2'), undefined);
  t.same(await dnsRows(networkId), [], 'no DNS row');
  t.equal(await a.networks.syncNames(a.chassis), 0, 'a sync of every local switch writes nothing');
  t.equal(await a.networks.deleteEndpoint('solo-2'), true);
  t.same(await dnsRows(networkId), [], 'still no DNS row');
});

t.test("another host's port joining: the first host publishes its names again, which writes them and the DNS row; again is a no-op", async (t) => {
  const { netA, netB, switchName } = await sharedNetwork(22);
  await endpoint(a, netA, 'join-a', '10.22.0.2/24');
  t.same(await a.networks.publishNames([{ endpointId: 'join-a', names: ['early', 'shared'] }], a.chassis), { published: [], local: ['join-a'] });
  t.same(await dnsRows(switchName), [], 'host A alone: no DNS row');

  const watch = nextJoin(a);
  t.teardown(watch.stop);
  await endpoint(b, netB, 'join-b', '10.22.0.3/24');
  const [uuid] = await watch.joined;
  t.equal(a.nb.replica.get('Logical_Switch', uuid!)?.name, switchName, "host A is told of the switch host B's port joined");
  t.same(a.networks.localNetworksOn([uuid!], a.chassis), [netA], "with host A's network on it");
  t.same((await a.networks.publishNames([{ endpointId: 'join-a', names: ['early', 'shared'] }], a.chassis)).published, ['join-a']);
  t.equal(await recordedNames(a, 'join-a'), 'early shared', 'the port records its names');
  t.same(await dnsRecords(switchName), { early: '10.22.0.2', shared: '10.22.0.2' }, "the DNS row has host A's names");
  t.equal(await a.networks.syncNames(a.chassis, [uuid!]), 0, 'a sync: nothing to write');
  await untilRecord(b, 'early');
  t.equal(await b.networks.syncNames(b.chassis), 0, "host B's sync of its switches finds the row current");

  // Host B publishing adds to it; the row is kept current from then on.
  await b.networks.publishNames([{ endpointId: 'join-b', names: ['shared', 'late'] }], b.chassis);
  t.same(await dnsRecords(switchName), { early: '10.22.0.2', shared: '10.22.0.2 10.22.0.3', late: '10.22.0.3' });
  await until(a.nb, () => a.networks.findEndpoint('join-b'));
  await untilRecord(a, 'late');
  t.equal(await a.networks.deleteEndpoint('join-a'), true);
  t.same(await dnsRecords(switchName), { shared: '10.22.0.3', late: '10.22.0.3' }, "host A's names leave with its port");
});

t.test('a switch with a DNS row keeps it current after the other host leaves', async (t) => {
  const { netA, switchName } = await endpointPair(23, 'keep');
  await a.networks.publishNames([{ endpointId: 'keep-a', names: ['first'] }], a.chassis);
  t.same(await dnsRecords(switchName), { first: '10.23.0.2' });
  await until(b.nb, () => b.networks.findEndpoint('keep-b'));
  t.equal(await b.networks.deleteEndpoint('keep-b'), true, 'host B leaves: only host A uses the switch');
  await until(a.nb, () => (a.networks.findEndpoint('keep-b') ? undefined : true));
  await endpoint(a, netA, 'keep-a2', '10.23.0.4/24');
  await a.networks.publishNames([{ endpointId: 'keep-a2', names: ['second'] }], a.chassis);
  t.same(await dnsRecords(switchName), { first: '10.23.0.2', second: '10.23.0.4' }, 'names published later are added');
  t.equal(await a.networks.deleteEndpoint('keep-a'), true);
  t.same(await dnsRecords(switchName), { second: '10.23.0.4' }, 'and removed');
});

t.test("another host's warm port is enough: its network on the pool, before its first container", async (t) => {
  const pools = { a: new OvnPools(a.nb), b: new OvnPools(b.nb) };
  const lease = await poolNetwork(a, pools.a, '10.24.0.0/24', 'a24');
  const address = await pools.a.requestAddress(lease.poolId, '', 'endpoint');
  await endpoint(a, 'a24', 'warm-join-a', address);
  t.same((await a.networks.publishNames([{ endpointId: 'warm-join-a', names: ['ready'] }], a.chassis)).local, ['warm-join-a']);
  t.same(await dnsRows(lease.name), [], 'host A alone: no DNS row');

  const watch = nextJoin(a);
  t.teardown(watch.stop);
  await poolNetwork(b, pools.b, '10.24.0.0/24', 'b24');
  t.ok((await b.warm.create(lease.name, b.chassis, 1, 0))[0], 'host B keeps a port warm');
  const switches = await watch.joined;
  t.same(a.networks.localNetworksOn(switches, a.chassis), ['a24']);
  t.same((await a.networks.publishNames([{ endpointId: 'warm-join-a', names: ['ready'] }], a.chassis)).published, ['warm-join-a']);
  t.same(await dnsRecords(lease.name), { ready: address.split('/')[0] });
});

t.test('two hosts syncing one switch at once converge on one row', async (t) => {
  const { switchName } = await endpointPair(25, 'both');
  // Names recorded while each host's replica showed no other host's port (as before the switch spanned hosts).
  for (const [h, id, names] of [
    [a, 'both-a', 'x shared'],
    [b, 'both-b', 'y shared'],
  ] as const) {
    const port = h.networks.findEndpoint(id)!.name;
    await h.nb.transaction((tx) => void tx.mutate('Logical_Switch_Port', [['name', '==', port]], [['external_ids', 'insert', new Map([[Keys.dnsNames, names]])]]));
  }
  const untilNames = (h: NbHost, id: string) =>
    until(h.nb, () => (publishedOf(h, id) ? true : undefined), `${id}'s names in host ${h.chassis}'s replica`);
  await Promise.all([untilNames(a, 'both-b'), untilNames(b, 'both-a'), untilNames(a, 'both-a'), untilNames(b, 'both-b')]);
  const [wa, wb] = await Promise.all([a.networks.syncNames(a.chassis), b.networks.syncNames(b.chassis)]);
  t.ok(wa + wb >= 1, `one of them wrote (${wa} + ${wb})`);
  t.same(await dnsRecords(switchName), { x: '10.25.0.2', y: '10.25.0.3', shared: '10.25.0.2 10.25.0.3' });
  t.equal((await dnsRows(switchName)).length, 1, 'one DNS row');
  await untilRecord(a, 'y');
  await untilRecord(b, 'x');
  t.same(await Promise.all([a.networks.syncNames(a.chassis), b.networks.syncNames(b.chassis)]), [0, 0], 'again: no writes');
});

function publishedOf(h: NbHost, endpointId: string): string | undefined {
  const name = h.networks.findEndpoint(endpointId)?.name;
  const row = name ? h.nb.replica.findOne('Logical_Switch_Port', 'name', name) : undefined;
  return row ? externalIds(row).get(Keys.dnsNames) : undefined;
}
