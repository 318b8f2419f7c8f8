/**
 * One address, one port (src/ovn/warm-holders.ts; issue 10): an endpoint's
 * transaction never leaves a second port at its address on the switch. A
 * warm port another host made after this host's replica was read is taken
 * over (the cause of a flake in test/warm/warm-pool-docker-ipam.test.ts: two
 * ports held 10.161.0.10); a leftover of this host's (a crash mid-start) is
 * replaced; another host's endpoint is refused, unless the network is on a
 * pool of our IPAM, whose reservation decides. A bare NB ovsdb-server; host
 * A's client talks through a proxy that can hold back what the server
 * sends, so that its replica lags on demand.
 */
import t from 'tap';
import { startOvsdbServer, type OvsdbServer } from '../harness/ovsdb-server.js';
import { startHoldProxy, type HoldProxy } from '../harness/hold-proxy.js';
import { connectNb } from '../harness/nb-hosts.js';
import type { OvsdbClient } from '../../src/ovsdb/index.js';
import { DomainError } from '../../src/errors.js';
import { Keys, OWNER } from '../../src/ovn/keys.js';
import { OvnNetworks } from '../../src/ovn/networks.js';
import { portSetName } from '../../src/ovn/port-sets.js';
import { reservationKey, warmHolder } from '../../src/ovn/records.js';
import { networkSpec } from './model-fixture.js';
import { externalIdsOf, select, wireSet } from './nb-reads.js';

let server: OvsdbServer;
let proxy: HoldProxy;
let a: OvsdbClient;
let b: OvsdbClient;
let netsA: OvnNetworks;
let netsB: OvnNetworks;

t.before(async () => {
  server = await startOvsdbServer({ schema: 'nb' });
  proxy = await startHoldProxy(server.unixRemote.replace(/^unix:/, ''));
  a = await connectNb(proxy.remote, 'host-a');
  b = await connectNb(server.unixRemote, 'host-b');
  netsA = new OvnNetworks(a);
  netsB = new OvnNetworks(b);
});
t.teardown(async () => {
  await a?.close();
  await b?.close();
  await proxy?.close();
  await server?.stop();
});

/** Names of the ports holding `ip`, read from the server. */
async function holdersOf(ip: string): Promise<string[]> {
  const rows = await select(b, 'Logical_Switch_Port', [], ['name', 'addresses']);
  return rows.filter((r) => wireSet(r.addresses).some((e) => String(e).split(' ').slice(1).includes(ip))).map((r) => String(r.name));
}

async function untilSeen(nets: OvnNetworks, client: OvsdbClient, endpointId: string): Promise<void> {
  await client.replica.waitFor(() => nets.findEndpoint(endpointId), { timeoutMs: 5000, what: `endpoint ${endpointId}` });
}

t.test("a warm port another host made after this host's replica was read is taken over, not doubled", async (t) => {
  const net = await netsA.ensureNetwork(networkSpec({ chassis: 'host-a' }, 61, 'n61'));
  const set = portSetName(net.name);
  const foreign = 'f'.repeat(64);
  const ip = '10.61.0.10';
  // Host A's replica stops here.
  proxy.hold();
  // Host B makes a warm port at the address Docker's IPAM will give on host A.
  const tx = b.newTransaction();
  const port = tx.insert('Logical_Switch_Port', {
    name: foreign,
    addresses: [`0a:58:0a:3d:00:0a ${ip}`],
    external_ids: new Map([[Keys.owner, OWNER], [Keys.switch, net.name], [Keys.warm, 'host-b'], [Keys.poolV4, set], [Keys.ipv4, `${ip}/24`]]),
  });
  tx.mutate('Logical_Switch', [['name', '==', net.name]], [['ports', 'insert', [port]]]);
  tx.insert('Address_Set', { name: set, external_ids: new Map([[Keys.owner, OWNER], [reservationKey(ip), warmHolder(foreign)]]) });
  await b.transact(tx);

  const sent = proxy.clientSent('"transact"');
  const creating = netsA.ensureEndpoint({ networkId: 'n61', endpointId: 'e'.repeat(64), ipv4: `${ip}/24`, chassis: 'host-a' });
  await sent;
  proxy.release();
  const { endpoint } = await creating;
  t.same(await holdersOf(ip), [endpoint.name], 'one port holds the address: the endpoint');
  t.equal(endpoint.mac, '0a:58:0a:3d:00:0a', 'with the MAC of its address, the warm port being gone');
  t.notOk((await externalIdsOf(b, 'Address_Set', set)).has(reservationKey(ip)), 'nor does the port set hold it as warm any more');
});

t.test("a leftover of this host's at the address Docker gives again is replaced, and named for its veth to go", async (t) => {
  await netsA.ensureNetwork(networkSpec({ chassis: 'host-a' }, 62, 'n62'));
  const leftover = await netsA.ensureEndpoint({ networkId: 'n62', endpointId: '1'.repeat(64), ipv4: '10.62.0.5/24', chassis: 'host-a' });
  // The driver crashed before answering; the engine rolled the endpoint back on its side and gives .5 again.
  const next = await netsA.ensureEndpoint({ networkId: 'n62', endpointId: '2'.repeat(64), ipv4: '10.62.0.5/24', chassis: 'host-a' });
  t.same(next.replaced, [leftover.endpoint.name], 'the leftover port is replaced');
  t.same(await holdersOf('10.62.0.5'), [next.endpoint.name], 'one port holds the address');
  t.same((await netsA.ensureEndpoint({ networkId: 'n62', endpointId: '2'.repeat(64), ipv4: '10.62.0.5/24', chassis: 'host-a' })).replaced, [], 'a retry finds its own port and replaces nothing');
});

t.test("another host's endpoint at the address is refused on a network of Docker's IPAM, and nothing is written", async (t) => {
  // A global-scope network: one Docker network id on both hosts, each engine with its own IPAM.
  await netsA.ensureNetwork(networkSpec({ chassis: 'host-a' }, 63, 'n63'));
  await b.replica.waitFor(() => netsB.findNetwork('n63'), { timeoutMs: 5000, what: 'the network on host B' });
  const theirs = await netsB.ensureEndpoint({ networkId: 'n63', endpointId: '3'.repeat(64), ipv4: '10.63.0.6/24', chassis: 'host-b' });
  await untilSeen(netsA, a, theirs.endpoint.endpointId);
  const err = await netsA.ensureEndpoint({ networkId: 'n63', endpointId: '4'.repeat(64), ipv4: '10.63.0.6/24', chassis: 'host-a' }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, DomainError);
  t.equal((err as DomainError).code, 'conflict');
  t.match((err as Error).message, /address 10\.63\.0\.6 is already in use on network n63 by endpoint 3{64} of host host-b/);
  t.same(await holdersOf('10.63.0.6'), [theirs.endpoint.name], "the other host's port stays, alone");
});

t.test("on a pool of our IPAM the reservation decides: another host's port at the address goes", async (t) => {
  await netsA.ensureNetwork(networkSpec({ chassis: 'host-a' }, 64, 'n64a', true));
  await netsB.ensureNetwork(networkSpec({ chassis: 'host-b' }, 64, 'n64b', true));
  const stale = await netsB.ensureEndpoint({ networkId: 'n64b', endpointId: '5'.repeat(64), ipv4: '10.64.0.7/24', chassis: 'host-b' });
  await untilSeen(netsA, a, stale.endpoint.endpointId);
  const mine = await netsA.ensureEndpoint({ networkId: 'n64a', endpointId: '6'.repeat(64), ipv4: '10.64.0.7/24', chassis: 'host-a' });
  t.same(mine.replaced, [stale.endpoint.name], "host B's stale port is replaced");
  t.same(await holdersOf('10.64.0.7'), [mine.endpoint.name], 'one port holds the address');
});
