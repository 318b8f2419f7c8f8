/**
 * The NB formats of the driver's records (src/ovn/records.ts): what is
 * written reads back as the same record, without a server.
 */
import t from 'tap';
import type { Row } from '../../src/ovsdb/index.js';
import {
  adoptedHolder,
  attachmentIds,
  endpointPortRow,
  networkExternalIds,
  parseWarmHolder,
  portAddressEntries,
  portIps,
  portMac,
  recycledHolder,
  reservationKey,
  toEndpoint,
  toNetwork,
  warmHolder,
  warmPortOf,
  type NetworkSpec,
} from '../../src/ovn/records.js';

t.test('a network reads back as it was written, with its own gateway choice', async (t) => {
  const spec: NetworkSpec = {
    networkId: 'n1',
    ipv4: [
      { subnet: '10.1.0.0/24', gateway: '10.1.0.1', aux: ['10.1.0.250'] },
      { subnet: '10.2.0.0/24' },
    ],
    ipv6: [{ subnet: 'fd01::/64', gateway: 'fd01::1' }],
    mtu: 1400,
    internal: false,
    options: { 'ovn.gateway': 'host', foo: 'bar' },
    pools: { v4: 'docker_pool_10.1.0.0_24' },
    chassis: 'host-a',
  };
  const row: Row = { _uuid: 'u1', name: 'docker_pool_10.1.0.0_24', external_ids: new Map([...networkExternalIds(spec), ...attachmentIds(spec)]) };
  const { chassis: _chassis, ...recorded } = spec;
  t.same(toNetwork(row, 'n1'), { ...recorded, uuid: 'u1', name: 'docker_pool_10.1.0.0_24', attached: ['n1'] });

  const internal = { ...spec, networkId: 'n2', internal: true, options: {} };
  const shared: Row = { ...row, external_ids: new Map([...(row.external_ids as Map<string, string>), ...attachmentIds(internal)]) };
  t.equal(toNetwork(shared, 'n2').internal, true, 'each network on a switch with its own choice');
  t.equal(toNetwork(shared, 'n1').internal, false);
  t.same(toNetwork(shared, 'n2').attached, ['n1', 'n2']);
});

t.test("an endpoint's port reads back as the endpoint; its addresses entries split into MAC and addresses", async (t) => {
  const spec = { networkId: 'n1', endpointId: 'e1', ipv4: '10.1.0.2/24', ipv6: 'FD01::2/64', chassis: 'host-a' };
  const row: Row = { _uuid: 'p1', ...endpointPortRow(spec, 'ls1', '02:42:0A:01:00:02') };
  t.same(row.addresses, ['02:42:0A:01:00:02 10.1.0.2 FD01::2'], 'one entry: the MAC and both addresses without prefix');
  t.same(toEndpoint(row), { uuid: 'p1', name: 'e1', networkId: 'n1', endpointId: 'e1', mac: '02:42:0A:01:00:02', ipv4: '10.1.0.2/24', ipv6: 'FD01::2/64', chassis: 'host-a', up: false });
  t.equal(portMac(row), '02:42:0A:01:00:02', 'the MAC as written');
  t.same(portIps(row), ['10.1.0.2', 'fd01::2'], 'addresses in lower case');
  const entries = { _uuid: 'p2', addresses: ['0a:58:0a:01:00:03 10.1.0.3', 'router'] };
  t.same(portAddressEntries(entries), [
    { mac: '0a:58:0a:01:00:03', ips: ['10.1.0.3'] },
    { mac: 'router', ips: [] },
  ]);
  t.equal(portMac({ _uuid: 'p3', addresses: [] }), '', 'no MAC without addresses');
});

t.test("holders of a pool's addresses: warm, adopted and recycled ports; anything else is no warm port's", async (t) => {
  t.same(parseWarmHolder(warmHolder('port1')), { state: 'warm', port: 'port1' });
  t.same(parseWarmHolder(recycledHolder('port1')), { state: 'recycled', port: 'port1' });
  t.same(parseWarmHolder(adoptedHolder('port1', 'e1', 'n1')), { state: 'adopted', port: 'port1', endpointId: 'e1', networkId: 'n1' });
  for (const other of ['gateway', 'aux', '0123456789ab 0badcafe', 'ep port1 e1', undefined]) {
    t.equal(parseWarmHolder(other), undefined, `${other} is no warm port's`);
  }
  t.equal(warmPortOf(warmHolder('port1')), 'port1');
  t.equal(warmPortOf(adoptedHolder('port1', 'e1', 'n1')), undefined, 'an adopted port holds its address for its endpoint');
  t.equal(reservationKey('10.1.0.2/24'), reservationKey('10.1.0.2'), 'one key with or without the prefix');
});
