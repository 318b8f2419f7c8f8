/**
 * DNS names on a switch (src/ovn/dns-names.ts; issue 9): a name belongs to
 * every endpoint that publishes it, on any host. Two hosts' networks on one
 * pool's switch, on a bare NB ovsdb-server; no OVN daemons are needed.
 */
import t from 'tap';
import { portSetName } from '../../src/ovn/port-sets.js';
import type { NbHost } from '../harness/nb-hosts.js';
import { select, until, wireMap, wireSet } from './nb-reads.js';
import { endpoint, networkSpec, useSharedSwitch } from './model-fixture.js';

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
  await until(b.nb, () => (b.networks.findEndpoint('dns-a') ? undefined : true));
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
