/**
 * Endpoints as logical switch ports (src/ovn/endpoints.ts), on a bare NB
 * ovsdb-server: the port and everything it needs in one write, the MAC it
 * gets, what is refused, and delete and wait. MACs other ports hold are in
 * switch-macs.test.ts, ports already at the endpoint's address in
 * warm-holders.test.ts.
 */
import t from 'tap';
import { DomainError } from '../../src/errors.js';
import { macFromId, macFromIPv4 } from '../../src/net/mac.js';
import { Keys } from '../../src/ovn/keys.js';
import type { NetworkSpec } from '../../src/ovn/networks.js';
import { portSetName } from '../../src/ovn/port-sets.js';
import { reservationKey } from '../../src/ovn/records.js';
import { useNbHosts, type NbHost } from '../harness/nb-hosts.js';
import { externalIdsOf, rowNamed, wireMap, wireSet } from './nb-reads.js';

const [a] = (await useNbHosts(t, ['host-a'])) as [NbHost];

/** A network of Docker's IPAM on 10.<n>.0.0/24 (and fd<n>::/64). */
async function network(networkId: string, n: number): Promise<void> {
  const spec: NetworkSpec = {
    networkId,
    ipv4: [{ subnet: `10.${n}.0.0/24`, gateway: `10.${n}.0.1` }],
    ipv6: [{ subnet: `fd${n}::/64` }],
    mtu: 1442,
    internal: false,
    options: {},
    chassis: a.chassis,
  };
  await a.networks.ensureNetwork(spec);
}

async function refusal(p: Promise<unknown>): Promise<DomainError | undefined> {
  return p.then(
    () => undefined,
    (e: unknown) => e as DomainError,
  );
}

t.test("an endpoint's port carries its addresses, port security and chassis from the start; a retry finds it", async (t) => {
  await network('net81', 81);
  const spec = { networkId: 'net81', endpointId: 'ep81', ipv4: '10.81.0.2/24', ipv6: 'fd81::2/64', chassis: a.chassis };
  const { endpoint, replaced } = await a.networks.ensureEndpoint(spec);
  t.match(endpoint, { name: 'ep81', networkId: 'net81', endpointId: 'ep81', mac: macFromIPv4('10.81.0.2'), ipv4: '10.81.0.2/24', ipv6: 'fd81::2/64', chassis: 'host-a', up: false });
  t.same(replaced, []);
  const row = await rowNamed(a.nb, 'Logical_Switch_Port', 'ep81', ['addresses', 'port_security', 'options', 'external_ids']);
  const entry = `${macFromIPv4('10.81.0.2')} 10.81.0.2 fd81::2`;
  t.same(wireSet(row?.addresses), [entry], 'addresses: the MAC and both addresses');
  t.same(wireSet(row?.port_security), [entry], 'port_security: the same');
  t.equal(wireMap(row?.options).get('requested-chassis'), 'host-a', 'pinned to its chassis');
  t.equal(wireMap(row?.external_ids).get(Keys.networkId), 'net81');

  const again = await a.networks.ensureEndpoint(spec);
  t.equal(again.endpoint.uuid, endpoint.uuid, 'a retry finds the same port');
  t.same(again.replaced, [], 'and replaces nothing');
  t.ok(a.networks.listEndpoints().some((e) => e.endpointId === 'ep81'), 'listed');
  t.equal(a.networks.findEndpoint('nobody'), undefined);
});

t.test('refused: an endpoint id already on another network, and a network OVN does not have', async (t) => {
  await network('net82', 82);
  await network('net83', 83);
  await a.networks.ensureEndpoint({ networkId: 'net82', endpointId: 'ep82', ipv4: '10.82.0.2/24' });
  const moved = await refusal(a.networks.ensureEndpoint({ networkId: 'net83', endpointId: 'ep82', ipv4: '10.83.0.2/24' }));
  t.equal(moved?.code, 'conflict');
  t.equal(moved?.message, 'endpoint ep82 already exists on network net82, not net83');
  const missing = await refusal(a.networks.ensureEndpoint({ networkId: 'nowhere', endpointId: 'ep-nowhere', ipv4: '10.84.0.2/24' }));
  t.type(missing, DomainError);
  t.equal(missing?.code, 'not-found');
  t.equal(missing?.message, 'network nowhere does not exist in OVN');
});

t.test("the MAC: Docker's as given; else from the IPv4 address unless a port holds that; else from the endpoint id", async (t) => {
  await network('net85', 85);
  const docker = await a.networks.ensureEndpoint({ networkId: 'net85', endpointId: 'ep85-docker', ipv4: '10.85.0.2/24', mac: '02:42:0A:55:00:02' });
  t.equal(docker.endpoint.mac, '02:42:0A:55:00:02', "Docker's MAC, as Docker wrote it");
  // A container with --mac-address took the MAC that 10.85.0.3 would have.
  await a.networks.ensureEndpoint({ networkId: 'net85', endpointId: 'ep85-other', ipv4: '10.85.0.9/24', mac: macFromIPv4('10.85.0.3') });
  const derived = await a.networks.ensureEndpoint({ networkId: 'net85', endpointId: 'ep85-next', ipv4: '10.85.0.3/24' });
  t.equal(derived.endpoint.mac, macFromId('ep85-next', 0), 'one derived from the endpoint id');
  const v6only = await a.networks.ensureEndpoint({ networkId: 'net85', endpointId: 'ep85-v6', ipv6: 'fd85::5/64' });
  t.equal(v6only.endpoint.mac, macFromId('ep85-v6', 0), 'without IPv4, from the endpoint id');
});

t.test("delete: true once, then false; an adopted warm port's address leaves its port set with it", async (t) => {
  await network('net86', 86);
  const set = portSetName('net86');
  const warm = (await a.warm.create(set, a.chassis, 1, 0))[0];
  if (!warm) throw new Error('no warm port');
  await a.warm.adopt(warm, 'net86', 'ep86');
  const adopted = a.networks.findEndpoint('ep86');
  t.match(adopted, { name: warm.name, endpointId: 'ep86', networkId: 'net86', mac: warm.mac }, 'the endpoint is on the warm port');
  t.ok(a.networks.listEndpoints().some((e) => e.endpointId === 'ep86' && e.name === warm.name), 'and listed as such');

  t.equal(await a.networks.deleteEndpoint('ep86'), true);
  t.equal(await rowNamed(a.nb, 'Logical_Switch_Port', warm.name, ['name']), undefined, 'the port is gone');
  t.notOk((await externalIdsOf(a.nb, 'Address_Set', set)).has(reservationKey(warm.ipv4)), 'the port set no longer holds its address');
  t.equal(await a.networks.deleteEndpoint('ep86'), false, 'a second DeleteEndpoint finds none');
});

t.test('waitPortUp: resolves when OVN reports the port up, fails at once when the port goes', async (t) => {
  await network('net87', 87);
  const { endpoint } = await a.networks.ensureEndpoint({ networkId: 'net87', endpointId: 'ep87-up', ipv4: '10.87.0.2/24' });
  const up = a.networks.waitPortUp(endpoint.name, 5000);
  // What ovn-northd writes once the port is bound.
  await a.nb.transaction((tx) => {
    tx.update('Logical_Switch_Port', [['name', '==', endpoint.name]], { up: true });
  });
  await up;
  t.equal(a.networks.findEndpoint('ep87-up')?.up, true, 'up');

  const { endpoint: gone } = await a.networks.ensureEndpoint({ networkId: 'net87', endpointId: 'ep87-gone', ipv4: '10.87.0.3/24' });
  const waiting = refusal(a.networks.waitPortUp(gone.name, 5000));
  await a.networks.deleteEndpoint('ep87-gone');
  const err = await waiting;
  t.equal(err?.code, 'not-found');
  t.equal(err?.message, `logical switch port ${gone.name} was deleted while waiting for it to come up`);

  const { endpoint: slow } = await a.networks.ensureEndpoint({ networkId: 'net87', endpointId: 'ep87-slow', ipv4: '10.87.0.4/24' });
  await t.rejects(a.networks.waitPortUp(slow.name, 100), 'a port never up fails at the timeout');
});
