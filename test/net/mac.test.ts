/** MAC derivation for endpoints Docker gave none. */
import t from 'tap';
import { isUnicastMac, macFromIPv4, macFromId } from '../../src/net/mac.js';

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
