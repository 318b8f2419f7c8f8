/**
 * Endpoint interface names: deterministic, within IFNAMSIZ, recognisable
 * after a crash, and never built from something that is not an endpoint id.
 */
import fc from 'fast-check';
import t from 'tap';
import { assertIfName, hostIfName, ifNameProblem, InvalidArgumentError, isOurHostIf, peerIfName } from '../../src/host/names.js';

const ID = '3f2a9c71b0e44d5e8a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071';

t.test('names from a Docker endpoint id', async (t) => {
  t.equal(hostIfName(ID), 'ovn3f2a9c71b0e4');
  t.equal(peerIfName(ID), 'ovc3f2a9c71b0e4');
  t.equal(hostIfName(ID).length, 15);
  t.equal(hostIfName(ID), hostIfName(ID), 'deterministic');
  t.equal(hostIfName(ID.toUpperCase()), hostIfName(ID), 'case does not change the name');
  t.equal(hostIfName(ID.slice(0, 12)), hostIfName(ID), 'a 12-digit prefix is enough');
  t.not(hostIfName(ID), peerIfName(ID));
});

t.test('ids that are not hex are rejected', async (t) => {
  for (const bad of ['', 'xyz', `${ID.slice(0, 20)}-${ID.slice(21)}`, `../${ID}`, `${ID.slice(0, 12)} `, 'abc123', ID.replace('3', 'g')]) {
    t.throws(() => hostIfName(bad), InvalidArgumentError, JSON.stringify(bad));
    t.throws(() => peerIfName(bad), InvalidArgumentError, JSON.stringify(bad));
  }
});

t.test('isOurHostIf recognises exactly what hostIfName makes', async (t) => {
  t.ok(isOurHostIf(hostIfName(ID)));
  for (const other of [peerIfName(ID), 'eth0', 'br-int', 'ovs-netdev', 'ovn-k8s-mp0', 'ovn3f2a9c71b0e', 'ovn3f2a9c71b0e45', 'ovn3F2A9C71B0E4', 'xovn3f2a9c71b0e4']) {
    t.notOk(isOurHostIf(other), other);
  }
  fc.assert(
    fc.property(fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF'), minLength: 64, maxLength: 64 }), (id) => {
      const host = hostIfName(id);
      const peer = peerIfName(id);
      return isOurHostIf(host) && !isOurHostIf(peer) && ifNameProblem(host) === undefined && ifNameProblem(peer) === undefined;
    }),
  );
});

t.test('interface name rules', async (t) => {
  for (const ok of ['eth0', 'br-int', 'a', 'x'.repeat(15), 'veth_1.2', 'ovn3f2a9c71b0e4']) t.equal(assertIfName(ok), ok, ok);
  for (const bad of ['', 'x'.repeat(16), '.', '..', 'a/b', 'a b', 'a\tb', 'a\nb', 'eth0:1', 'eth%d', 'é', 'ab\0c', 'äääääääää', '-j', '--help']) {
    t.throws(() => assertIfName(bad), InvalidArgumentError, JSON.stringify(bad));
  }
  t.throws(() => assertIfName('a b', 'bridge name'), /invalid bridge name "a b": contains/);
});
