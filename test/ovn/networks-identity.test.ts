/**
 * Identity on a switch (issue 9): a MAC belongs to one port of a switch (the
 * gateway's included), and a DNS name to every endpoint that publishes it.
 * Two OvsdbClients on one bare NB ovsdb-server stand for two hosts sharing a
 * pool's switch; no OVN daemons are needed.
 */
import t, { type Test } from 'tap';
import { useNbHosts, type NbHost } from '../harness/nb-hosts.js';
import { DomainError } from '../../src/errors.js';
import { type EndpointRecord, type NetworkSpec } from '../../src/ovn/networks.js';
import { portSetName } from '../../src/ovn/port-sets.js';
import { macFromIPv4 } from '../../src/net/mac.js';

type Host = NbHost;

const [a, b] = (await useNbHosts(t, ['host-a', 'host-b'])) as [Host, Host];

/** 10.<n>.0.0/24 with gateway 10.<n>.0.1; on a pool when `pool`, so that every host's network shares one switch. */
function networkSpec(h: Host, n: number, networkId: string, pool: boolean): NetworkSpec {
  const subnet = `10.${n}.0.0/24`;
  return {
    networkId,
    ipv4: [{ subnet, gateway: `10.${n}.0.1` }],
    ipv6: [],
    mtu: 1442,
    internal: false,
    options: {},
    ...(pool ? { pools: { v4: `docker_pool_10.${n}.0.0_24` } } : {}),
    chassis: h.chassis,
  };
}

/** One switch, network `a<n>` of host A and `b<n>` of host B on it; each host's replica knows both. */
async function sharedNetwork(n: number): Promise<{ netA: string; netB: string; switchName: string }> {
  const netA = `a${n}`;
  const netB = `b${n}`;
  const created = await a.networks.ensureNetwork(networkSpec(a, n, netA, true));
  await b.networks.ensureNetwork(networkSpec(b, n, netB, true));
  await until(a, () => a.networks.findNetwork(netB));
  return { netA, netB, switchName: created.name };
}

/**
 * sharedNetwork(n) with endpoint `<prefix>-a` of host A at 10.<n>.0.2 and
 * `<prefix>-b` of host B at 10.<n>.0.3, both known to both replicas.
 */
async function endpointPair(n: number, prefix: string): Promise<{ netA: string; switchName: string }> {
  const { netA, netB, switchName } = await sharedNetwork(n);
  await endpoint(a, netA, `${prefix}-a`, `10.${n}.0.2/24`);
  await endpoint(b, netB, `${prefix}-b`, `10.${n}.0.3/24`);
  await seenByBoth(`${prefix}-a`);
  await seenByBoth(`${prefix}-b`);
  return { netA, switchName };
}

function until<T>(h: Host, probe: () => T | undefined, what = 'replica update'): Promise<T> {
  return h.nb.replica.waitFor(probe, { timeoutMs: 5000, what });
}

/** The host's replica has a DNS record of `name`. */
function untilRecord(h: Host, name: string): Promise<true> {
  const has = () => [...h.nb.replica.rows('DNS')].some((r) => r.records instanceof Map && r.records.has(name));
  return until(h, () => (has() ? true : undefined), `a record of ${name}`);
}

/** Both hosts' replicas show the endpoint. */
async function seenByBoth(endpointId: string): Promise<void> {
  await until(a, () => a.networks.findEndpoint(endpointId), `host A sees ${endpointId}`);
  await until(b, () => b.networks.findEndpoint(endpointId), `host B sees ${endpointId}`);
}

function endpoint(h: Host, networkId: string, endpointId: string, ipv4: string, mac?: string): Promise<EndpointRecord> {
  return h.networks.ensureEndpoint({ networkId, endpointId, ipv4, chassis: h.chassis, ...(mac ? { mac } : {}) }).then((r) => r.endpoint);
}

/** Read from the server, not a replica: what NB holds once the transactions returned. */
async function select(table: string, where: [string, '==', string][], columns: string[]): Promise<Record<string, unknown>[]> {
  const tx = a.nb.newTransaction();
  tx.select(table, where, columns);
  return (await a.nb.transact(tx)).rowsOf(0);
}

/** The switch's DNS records, read from the server. */
async function dnsRecords(switchName: string): Promise<Record<string, string>> {
  const [ls] = await select('Logical_Switch', [['name', '==', switchName]], ['dns_records']);
  const refs = wireSet(ls?.dns_records) as [string, string][];
  const out: Record<string, string> = {};
  for (const [, uuid] of refs) {
    const [dns] = await select('DNS', [['_uuid', '==', uuid]], ['records']);
    for (const [name, value] of (dns?.records as ['map', [string, string][]])[1]) out[name] = value;
  }
  return out;
}

/** The elements of an OVSDB set in wire form (a lone atom is a set of one). */
function wireSet(datum: unknown): unknown[] {
  return Array.isArray(datum) && datum[0] === 'set' ? (datum[1] as unknown[]) : datum === undefined ? [] : [datum];
}

async function portNamed(name: string): Promise<Record<string, unknown> | undefined> {
  return (await select('Logical_Switch_Port', [['name', '==', name]], ['name', 'addresses']))[0];
}

async function conflict(t: Test, p: Promise<unknown>, message: RegExp): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, DomainError, 'refused with a DomainError');
  t.equal((err as DomainError | undefined)?.code, 'conflict');
  t.match((err as Error | undefined)?.message, message);
}

t.test("a MAC another host's endpoint holds is refused, whatever its case, and nothing is written", async (t) => {
  const { netA, netB } = await sharedNetwork(11);
  const first = await endpoint(a, netA, 'mac-a1', '10.11.0.2/24');
  t.equal(first.mac, macFromIPv4('10.11.0.2'));
  await seenByBoth('mac-a1');
  await conflict(t, endpoint(b, netB, 'mac-b1', '10.11.0.3/24', first.mac), /MAC address 0a:58:0a:0b:00:02 is already used by port mac-a1 on network b11; choose another --mac-address/);
  await conflict(t, endpoint(b, netB, 'mac-b2', '10.11.0.4/24', first.mac.toUpperCase()), /already used by port mac-a1/);
  t.equal(await portNamed('mac-b1'), undefined, 'no port for the refused endpoint');
  t.equal(await portNamed('mac-b2'), undefined, 'no port for the refused endpoint');
  // A MAC nobody holds is still fine.
  const own = await endpoint(b, netB, 'mac-b3', '10.11.0.5/24', '02:42:0a:0b:00:05');
  t.equal(own.mac, '02:42:0a:0b:00:05');
});

t.test("the gateway's MAC is refused, with or without its localport", async (t) => {
  const { netA, switchName } = await sharedNetwork(12);
  const gatewayMac = macFromIPv4('10.12.0.1');
  await conflict(t, endpoint(a, netA, 'gw-a1', '10.12.0.2/24', gatewayMac), /MAC address 0a:58:0a:0c:00:01 is the gateway's on network a12; choose another --mac-address/);
  // Without the localport row the MAC is still the gateway's (hosts answer ARP for it).
  await a.nb.transaction((tx, replica) => {
    const ls = replica.findOne('Logical_Switch', 'name', switchName)!;
    const gw = replica.findOne('Logical_Switch_Port', 'name', `${switchName}-gw`)!;
    tx.mutate('Logical_Switch', [['_uuid', '==', ls._uuid]], [['ports', 'delete', [gw._uuid]]]);
  });
  t.equal(await portNamed(`${switchName}-gw`), undefined, 'the gateway localport is gone');
  await conflict(t, endpoint(a, netA, 'gw-a2', '10.12.0.3/24', gatewayMac), /is the gateway's on network a12/);
  t.equal(await portNamed('gw-a1'), undefined);
  t.equal(await portNamed('gw-a2'), undefined);
});

t.test('two hosts asking for one MAC at once: one gets it, the other is refused after re-running', async (t) => {
  const { netA, netB } = await sharedNetwork(13);
  const mac = '02:42:0a:0d:00:99';
  // Both transactions are built before either commits: only the guard on the switch's ports tells them apart.
  const results = await Promise.allSettled([endpoint(a, netA, 'race-a', '10.13.0.2/24', mac), endpoint(b, netB, 'race-b', '10.13.0.3/24', mac)]);
  const won = results.filter((r) => r.status === 'fulfilled');
  const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  t.equal(won.length, 1, 'one endpoint gets the MAC');
  t.equal(lost.length, 1, 'the other is refused');
  const winner = (won[0] as PromiseFulfilledResult<EndpointRecord> | undefined)?.value.name;
  t.type(lost[0]?.reason, DomainError);
  t.match((lost[0]?.reason as Error | undefined)?.message, new RegExp(`MAC address ${mac} is already used by port ${winner}`));
  const ports = [await portNamed('race-a'), await portNamed('race-b')].filter(Boolean);
  t.equal(ports.length, 1, 'one port in NB');
});

t.test("a warm port the endpoint takes over frees its MAC for it", async (t) => {
  const networkId = 'warm14';
  // Docker's IPAM: the switch has its own port set, and the warm port the lowest free address.
  await b.networks.ensureNetwork(networkSpec(b, 14, networkId, false));
  const warm = await b.warm.create(portSetName(networkId), b.chassis, 0);
  t.ok(warm, 'a warm port');
  t.equal(warm?.ipv4, '10.14.0.2/24');
  t.equal(warm?.state, 'warm');
  // Another port's MAC is refused ...
  await conflict(t, endpoint(b, networkId, 'warm-b0', '10.14.0.3/24', warm!.mac), new RegExp(`already used by port ${warm!.name}`));
  // ... but the one of the warm port this endpoint's address takes over is the endpoint's to take.
  const ep = await endpoint(b, networkId, 'warm-b1', '10.14.0.2/24', warm!.mac);
  t.equal(ep.mac, warm!.mac);
  t.equal(await portNamed(warm!.name), undefined, 'the warm port went in the same transaction');
});

t.test("one name on two hosts answers with both addresses; removing one endpoint keeps the other's", async (t) => {
  const { switchName } = await endpointPair(15, 'dns');
  t.same(await a.networks.publishNames([{ endpointId: 'dns-a', names: ['web', 'only-a'] }]), ['dns-a']);
  await untilRecord(b, 'only-a');
  t.same(await b.networks.publishNames([{ endpointId: 'dns-b', names: ['Web', 'only-b'] }]), ['dns-b']);
  t.same(await dnsRecords(switchName), { web: '10.15.0.2 10.15.0.3', 'only-a': '10.15.0.2', 'only-b': '10.15.0.3' });
  // Publishing again (a driver restart's sync) changes nothing.
  await a.networks.publishNames([{ endpointId: 'dns-a', names: ['web', 'only-a'] }]);
  t.same(await dnsRecords(switchName), { web: '10.15.0.2 10.15.0.3', 'only-a': '10.15.0.2', 'only-b': '10.15.0.3' });

  await untilRecord(a, 'only-b');
  t.equal(await a.networks.deleteEndpoint('dns-a'), true);
  t.same(await dnsRecords(switchName), { web: '10.15.0.3', 'only-b': '10.15.0.3' }, "host A's names leave, host B's address stays");
  await until(b, () => (b.networks.findEndpoint('dns-a') ? undefined : true));
  t.equal(await b.networks.deleteEndpoint('dns-b'), true);
  t.same(await dnsRecords(switchName), {}, 'the last publisher takes the name with it');
});

t.test('names a port no longer publishes leave its address behind', async (t) => {
  const { netA, switchName } = await sharedNetwork(16);
  await endpoint(a, netA, 'rename-a', '10.16.0.2/24');
  await a.networks.publishNames([{ endpointId: 'rename-a', names: ['old-name', 'kept'] }]);
  await a.networks.publishNames([{ endpointId: 'rename-a', names: ['kept', 'new-name'] }]);
  t.same(await dnsRecords(switchName), { kept: '10.16.0.2', 'new-name': '10.16.0.2' });
});

t.test('two hosts publishing one name at once both end up in its record', async (t) => {
  const { netA, switchName } = await endpointPair(17, 'race-dns');
  // A DNS row exists already: both publishers mutate it (the row's creation has a guard of its own).
  await endpoint(a, netA, 'race-dns-0', '10.17.0.9/24');
  await a.networks.publishNames([{ endpointId: 'race-dns-0', names: ['other'] }]);
  await untilRecord(b, 'other');
  const [pa, pb] = await Promise.all([
    a.networks.publishNames([{ endpointId: 'race-dns-a', names: ['db'] }]),
    b.networks.publishNames([{ endpointId: 'race-dns-b', names: ['db'] }]),
  ]);
  t.same([pa, pb], [['race-dns-a'], ['race-dns-b']]);
  t.same(await dnsRecords(switchName), { other: '10.17.0.9', db: '10.17.0.2 10.17.0.3' });
});

t.test('two hosts creating the DNS row at once both end up in the record', async (t) => {
  const { switchName } = await endpointPair(18, 'first-dns');
  await Promise.all([
    a.networks.publishNames([{ endpointId: 'first-dns-a', names: ['db'] }]),
    b.networks.publishNames([{ endpointId: 'first-dns-b', names: ['db'] }]),
  ]);
  t.same(await dnsRecords(switchName), { db: '10.18.0.2 10.18.0.3' });
});

t.test("a port kept warm when its endpoint goes takes its names, not the other publisher's", async (t) => {
  const networkId = 'warm19';
  await b.networks.ensureNetwork(networkSpec(b, 19, networkId, false));
  await endpoint(b, networkId, 'recycle-1', '10.19.0.2/24');
  await endpoint(b, networkId, 'recycle-2', '10.19.0.3/24');
  await b.networks.publishNames([
    { endpointId: 'recycle-1', names: ['svc', 'one'] },
    { endpointId: 'recycle-2', names: ['svc'] },
  ]);
  t.same(await dnsRecords(networkId), { svc: '10.19.0.2 10.19.0.3', one: '10.19.0.2' }, 'one batch, both addresses');
  const kept = await b.warm.recycle('recycle-1', b.chassis, portSetName(networkId));
  t.equal(kept?.state, 'warm', 'the port is warm again');
  t.same(await dnsRecords(networkId), { svc: '10.19.0.3' });
});

t.test('one host removing its endpoint while another publishes the name keeps only the publisher', async (t) => {
  const { switchName } = await endpointPair(20, 'leave');
  await a.networks.publishNames([{ endpointId: 'leave-a', names: ['api'] }]);
  await untilRecord(b, 'api');
  // Each builds from a replica without the other's change: the guard on the records makes the later one re-run.
  await Promise.all([a.networks.deleteEndpoint('leave-a'), b.networks.publishNames([{ endpointId: 'leave-b', names: ['api'] }])]);
  t.same(await dnsRecords(switchName), { api: '10.20.0.3' });
});
