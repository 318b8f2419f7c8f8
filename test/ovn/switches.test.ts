/**
 * Networks as logical switches (src/ovn/switches.ts), on a bare NB
 * ovsdb-server: a network of Docker's IPAM gets a switch of its own, the
 * networks on a pool (any host's) share the pool's switch, and create and
 * delete may run again. Per-network gateway choices on a shared switch are
 * in networks-gateway.test.ts.
 */
import t from 'tap';
import { DomainError } from '../../src/errors.js';
import { Keys, OWNER } from '../../src/ovn/keys.js';
import type { NetworkSpec } from '../../src/ovn/networks.js';
import { portSetName } from '../../src/ovn/port-sets.js';
import { DEFAULT_MTU } from '../../src/ovn/records.js';
import { useNbHosts, type NbHost } from '../harness/nb-hosts.js';
import { networkSpec } from './model-fixture.js';
import { rowNamed, select, until, wireMap, wireSet } from './nb-reads.js';

const [a, b] = (await useNbHosts(t, ['host-a', 'host-b'])) as [NbHost, NbHost];

t.test("a network of Docker's IPAM gets a switch of its own with its gateway localport, made once", async (t) => {
  const own: NetworkSpec = {
    ...networkSpec(a, 71, 'own71'),
    ipv4: [{ subnet: '10.71.0.0/24', gateway: '10.71.0.1', aux: ['10.71.0.250'] }],
    ipv6: [{ subnet: 'fd71::/64', gateway: 'fd71::1' }],
    mtu: 1400,
    options: { 'ovn.gateway': 'docker', foo: 'bar' },
  };
  const created = await a.networks.ensureNetwork(own);
  t.match(created, {
    name: 'own71',
    networkId: 'own71',
    attached: ['own71'],
    ipv4: [{ subnet: '10.71.0.0/24', gateway: '10.71.0.1', aux: ['10.71.0.250'] }],
    ipv6: [{ subnet: 'fd71::/64', gateway: 'fd71::1' }],
    mtu: 1400,
    internal: false,
    options: { 'ovn.gateway': 'docker', foo: 'bar' },
  });
  t.notOk('pools' in created, 'on no pool');
  t.same(a.networks.findNetwork('own71'), created, 'found as created');

  const again = await a.networks.ensureNetwork(own);
  t.equal(again.uuid, created.uuid, 'a retry finds the same switch');
  t.equal((await select(a.nb, 'Logical_Switch', [['name', '==', 'own71']], ['name'])).length, 1, 'one switch in NB');
  const ls = await rowNamed(a.nb, 'Logical_Switch', 'own71', ['other_config']);
  t.equal(wireMap(ls?.other_config).get('mcast_snoop'), 'false');
  const gateway = await rowNamed(a.nb, 'Logical_Switch_Port', 'own71-gw', ['type', 'addresses']);
  t.equal(gateway?.type, 'localport', 'the gateway is a localport');
  t.same(wireSet(gateway?.addresses), ['0a:58:0a:47:00:01 10.71.0.1 fd71::1'], 'at both gateway addresses, with the MAC of the IPv4 one');
});

t.test("networks on one pool share the pool's switch; one with other subnets is refused", async (t) => {
  const first = await a.networks.ensureNetwork(networkSpec(a, 72, 'pa72', true));
  await until(b.nb, () => b.nb.replica.findOne('Logical_Switch', 'name', first.name));
  const second = await b.networks.ensureNetwork(networkSpec(b, 72, 'pb72', true));
  t.equal(first.name, 'docker_pool_10.72.0.0_24', 'the switch is named after the pool');
  t.equal(second.uuid, first.uuid, 'one switch');
  t.same(second.attached.sort(), ['pa72', 'pb72'], 'with both networks attached');
  t.same(second.pools, { v4: 'docker_pool_10.72.0.0_24' });

  const other = { ...networkSpec(b, 73, 'pc72'), pools: { v4: 'docker_pool_10.72.0.0_24' } };
  const err = await b.networks.ensureNetwork(other).then(() => undefined, (e: unknown) => e);
  t.type(err, DomainError);
  t.equal((err as DomainError).code, 'conflict');
  t.match((err as Error).message, /carries subnets 10\.72\.0\.0\/24, not 10\.73\.0\.0\/24; create the network with the same --subnet options on every host/);
  t.equal(b.networks.findNetwork('pc72'), undefined, 'not attached');

  await until(a.nb, () => a.networks.findNetwork('pb72'));
  t.ok(a.networks.localNetworkIds(a.chassis).includes('pa72'), "host A's network is local to host A");
  t.notOk(a.networks.localNetworkIds(a.chassis).includes('pb72'), "host B's is not");
  t.ok(b.networks.localNetworkIds(b.chassis).includes('pb72'));
});

t.test('the last network out takes its DNS row and port set with the switch; deleting again finds nothing', async (t) => {
  await a.networks.ensureNetwork(networkSpec(a, 74, 'del74'));
  const { endpoint } = await a.networks.ensureEndpoint({ networkId: 'del74', endpointId: 'ep-del74', ipv4: '10.74.0.2/24', chassis: a.chassis });
  // A port of another host: the switch spans hosts, so the names get a DNS row.
  await a.networks.ensureEndpoint({ networkId: 'del74', endpointId: 'ep-del74-b', ipv4: '10.74.0.3/24', chassis: b.chassis });
  await a.networks.publishNames([{ endpointId: 'ep-del74', names: ['web74'] }], a.chassis);
  const warm = (await a.warm.create(portSetName('del74'), a.chassis, 1, 0))[0];
  t.ok(warm, 'a warm port, and so a port set');
  const [ls] = await select(a.nb, 'Logical_Switch', [['name', '==', 'del74']], ['dns_records']);
  const dns = wireSet(ls?.dns_records).map((ref) => String((ref as [string, string])[1]));
  t.equal(dns.length, 1, 'the switch has its DNS row');

  t.equal(await a.networks.deleteNetwork('del74'), true);
  t.equal(await rowNamed(a.nb, 'Logical_Switch', 'del74', ['name']), undefined, 'the switch is gone');
  t.equal(await rowNamed(a.nb, 'Logical_Switch_Port', endpoint.name, ['name']), undefined, 'with its ports');
  t.equal(await rowNamed(a.nb, 'Logical_Switch_Port', warm!.name, ['name']), undefined, 'warm ones too');
  t.same(await select(a.nb, 'DNS', [['_uuid', '==', dns[0]!]], ['records']), [], 'its DNS row is gone');
  t.equal(await rowNamed(a.nb, 'Address_Set', portSetName('del74'), ['name']), undefined, 'and its port set');
  t.equal(a.networks.findNetwork('del74'), undefined);
  t.equal(await a.networks.deleteNetwork('del74'), false, 'a second DeleteNetwork finds none');
});

t.test('a switch written without an MTU or with unreadable options still reads as a network', async (t) => {
  await a.nb.transaction((tx) => {
    tx.insert('Logical_Switch', {
      name: 'bare75',
      external_ids: new Map([
        [Keys.owner, OWNER],
        [`${Keys.networkPrefix}bare75`, a.chassis],
        [Keys.ipv4Subnets, '10.75.0.0/24'],
        [Keys.options, '{not json'],
        [Keys.internal, 'true'],
      ]),
    });
  });
  const record = await until(a.nb, () => a.networks.findNetwork('bare75'));
  t.equal(record.mtu, DEFAULT_MTU, 'the default MTU');
  t.same(record.options, {}, 'no options');
  t.equal(record.internal, true, 'internal as stored, without a per-network gateway key');
  t.same(record.ipv4, [{ subnet: '10.75.0.0/24' }]);
  t.equal(await a.networks.deleteNetwork('bare75'), true);
});
