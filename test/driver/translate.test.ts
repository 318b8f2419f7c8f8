/** Request translation: CreateNetwork bodies to network specs, with their checks. */
import t from 'tap';
import { genericOptions, toNetworkSpec } from '../../src/driver/translate.js';
import { DriverError } from '../../src/driver/errors.js';

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
