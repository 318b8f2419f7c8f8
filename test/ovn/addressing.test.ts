/** Pure address logic: CIDR parsing, canonical networks, MAC derivation, request translation. */
import t from 'tap';
import { AddressError, contains, networkOf, parseCidr } from '../../src/ovn/addressing.js';
import { isUnicastMac, macFromIPv4, macFromId } from '../../src/ovn/mac.js';
import { genericOptions, toNetworkSpec } from '../../src/driver/translate.js';
import { freeAddresses } from '../../src/ovn/addressing.js';
import { DriverError } from '../../src/driver/errors.js';

t.test('parseCidr and networkOf', async (t) => {
  t.same(parseCidr('10.1.0.2/24'), { ip: '10.1.0.2', prefix: 24, family: 4 });
  t.equal(networkOf(parseCidr('10.1.0.2/24')), '10.1.0.0/24');
  t.equal(networkOf(parseCidr('FD78::5/64')), 'fd78::/64', 'IPv6 in compressed lower-case form');
  t.equal(networkOf(parseCidr('2001:db8:0:0:1::1/48')), '2001:db8::/48');
  for (const bad of ['10.1.0.0', '10.1.0.0/33', '10.1.0/24', 'fd00::/129', 'x/24', '10.1.0.0/2x', '']) {
    t.throws(() => parseCidr(bad), AddressError, `refuses "${bad}"`);
  }
  t.throws(() => parseCidr('fd00::1/64', 4), /not an IPv4/);
  t.ok(contains('10.1.0.0/24', '10.1.0.200'));
  t.notOk(contains('10.1.0.0/24', '10.1.1.1'));
});

t.test('MACs are locally administered unicast and deterministic', async (t) => {
  t.equal(macFromIPv4('10.71.0.2'), '0a:58:0a:47:00:02');
  t.equal(macFromId('abc'), macFromId('abc'), 'same id, same MAC');
  t.not(macFromId('abc', 0), macFromId('abc', 1), 'attempts differ');
  for (const mac of [macFromIPv4('192.168.255.254'), macFromId('x'), macFromId('y', 7)]) {
    t.ok(isUnicastMac(mac), `${mac} is unicast`);
    t.equal(parseInt(mac.slice(0, 2), 16) & 2, 2, `${mac} is locally administered`);
  }
  t.notOk(isUnicastMac('01:00:5e:00:00:01'));
  t.throws(() => macFromIPv4('10.1.0.256'));
});

t.test('CreateNetwork translation', async (t) => {
  const spec = toNetworkSpec(
    {
      NetworkID: 'abc',
      Options: {
        'com.docker.network.internal': true,
        'com.docker.network.generic': { 'com.docker.network.driver.mtu': '1400', foo: 'bar' },
      },
      IPv4Data: [{ AddressSpace: '', Pool: '10.1.0.7/24', Gateway: '10.1.0.1/24' }],
      IPv6Data: [{ AddressSpace: '', Pool: 'fd00:1::/64' }],
    },
    { mtu: 1442, gateway: 'host' },
  );
  t.same(spec, {
    networkId: 'abc',
    ipv4: [{ subnet: '10.1.0.0/24', gateway: '10.1.0.1' }],
    ipv6: [{ subnet: 'fd00:1::/64' }],
    mtu: 1400,
    internal: true,
    options: { 'com.docker.network.driver.mtu': '1400', foo: 'bar', 'ovn.gateway': 'host' },
  });
  const gatewayOf = (generic: Record<string, string>, fallback: 'host' | 'docker') =>
    toNetworkSpec({ NetworkID: 'x', Options: { 'com.docker.network.generic': generic } }, { mtu: 1442, gateway: fallback }).options['ovn.gateway'];
  t.equal(gatewayOf({}, 'docker'), 'docker', "the driver's default egress is recorded in the network");
  t.equal(gatewayOf({ 'ovn.gateway': 'docker' }, 'host'), 'docker', '-o ovn.gateway wins over the default');
  t.throws(() => gatewayOf({ 'ovn.gateway': 'router' }, 'host'), /ovn.gateway must be "host"/, 'an unknown gateway mode is refused');
  t.equal(toNetworkSpec({ NetworkID: 'x' }, { mtu: 1442, gateway: 'host' }).mtu, 1442, 'default MTU');
  for (const mtu of ['0', '1279', '65001', '14x0', '']) {
    t.throws(
      () => toNetworkSpec({ NetworkID: 'x', Options: { 'com.docker.network.generic': { 'com.docker.network.driver.mtu': mtu } } }, { mtu: 1442, gateway: 'host' }),
      DriverError,
      `MTU "${mtu}" refused`,
    );
  }
  t.throws(() => genericOptions({ 'com.docker.network.generic': { a: 1 } }), /must be a string/);
  t.throws(() => genericOptions({ 'com.docker.network.generic': [] }), /must be an object/);
});

t.test('free address scans: network and broadcast addresses, range edges, a starting point', async (t) => {
  const none = new Set<string>();
  t.same(freeAddresses('10.1.0.0/24', none, 2), { first: '10.1.0.1', count: 2 }, 'the network address is skipped');
  t.same(freeAddresses('10.1.0.0/24', new Set(['10.1.0.1', '10.1.0.2']), 1), { first: '10.1.0.3', count: 1 }, 'taken ones are skipped');
  t.same(freeAddresses('10.1.0.0/30', new Set(['10.1.0.1']), 5), { first: '10.1.0.2', count: 1 }, 'so is the broadcast address');
  t.same(freeAddresses('10.1.0.0/30', new Set(['10.1.0.1', '10.1.0.2']), 5), { count: 0 }, 'a full subnet has none');
  t.same(
    freeAddresses('10.1.0.0/24', none, 1, { range: '10.1.0.128/25', skipRangeEdges: true }),
    { first: '10.1.0.129', count: 1 },
    "an --ip-range's own first address is skipped where asked",
  );
  t.same(freeAddresses('10.1.0.0/24', none, 1, { from: '10.1.0.200' }), { first: '10.1.0.200', count: 1 }, 'the scan starts at `from`');
  t.same(freeAddresses('10.1.0.0/24', none, 1, { from: '9.0.0.0' }), { first: '10.1.0.1', count: 1 }, 'a `from` below the subnet is the subnet start');
  t.same(freeAddresses('fd00::/64', new Set(['fd00::1']), 1), { first: 'fd00::2', count: 1 }, 'IPv6 in canonical form');
});
