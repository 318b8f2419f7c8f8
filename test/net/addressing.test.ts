/** Address arithmetic: CIDR parsing, canonical networks, free address scans. */
import t from 'tap';
import { AddressError, bigToIPv4, contains, ipv4Value, lowestFree, networkOf, parseCidr } from '../../src/net/addressing.js';

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

t.test('ipv4Value orders addresses, with or without a prefix, and refuses what is not IPv4', async (t) => {
  t.equal(ipv4Value('10.1.0.5'), 0x0a010005n);
  t.equal(ipv4Value('10.1.0.5/24'), ipv4Value('10.1.0.5'), 'the prefix is ignored');
  t.equal(ipv4Value('255.255.255.255'), 0xffffffffn);
  t.equal(bigToIPv4(ipv4Value('192.168.7.250')), '192.168.7.250', 'round trip');
  t.ok(ipv4Value('10.1.0.9') < ipv4Value('10.1.0.10'), 'numeric, not lexical');
  for (const bad of ['fd00::1', '10.1.0', '10.1.0.256', '', 'x']) t.throws(() => ipv4Value(bad), AddressError, `refuses "${bad}"`);
});

t.test('free address scans: network and broadcast addresses, range edges, a starting point', async (t) => {
  const none = new Set<string>();
  t.same(lowestFree('10.1.0.0/24', none, 2), ['10.1.0.1', '10.1.0.2'], 'the network address is skipped');
  t.same(lowestFree('10.1.0.0/24', new Set(['10.1.0.1', '10.1.0.2']), 1), ['10.1.0.3'], 'taken ones are skipped');
  t.same(lowestFree('10.1.0.0/30', new Set(['10.1.0.1']), 5), ['10.1.0.2'], 'so is the broadcast address');
  t.same(lowestFree('10.1.0.0/30', new Set(['10.1.0.1', '10.1.0.2']), 5), [], 'a full subnet has none');
  t.same(
    lowestFree('10.1.0.0/24', none, 1, { range: '10.1.0.128/25', skipRangeEdges: true }),
    ['10.1.0.129'],
    "an --ip-range's own first address is skipped where asked",
  );
  t.same(lowestFree('10.1.0.0/24', none, 1, { from: '10.1.0.200' }), ['10.1.0.200'], 'the scan starts at `from`');
  t.same(lowestFree('10.1.0.0/24', none, 1, { from: '9.0.0.0' }), ['10.1.0.1'], 'a `from` below the subnet is the subnet start');
  t.same(lowestFree('fd00::/64', new Set(['fd00::1']), 1), ['fd00::2'], 'IPv6 in canonical form');
});
