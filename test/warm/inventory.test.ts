/** The warm ports a host knows of in memory: taken once, counted per pool. Pure logic. */
import t from 'tap';
import type { WarmPort } from '../../src/ovn/warm-ports.js';
import { Inventory } from '../../src/warm/inventory.js';

const port = (name: string, pool: string, ipv4: string): WarmPort => ({ uuid: name, name, pool, ipv4, mac: '0a:58:0a:00:00:02', mtu: 1442, state: 'warm' });

t.test('a ready port is taken once: the first of its pool, or the one at an address', async (t) => {
  const inv = new Inventory();
  inv.addReady(port('a', 'p', '10.0.0.2/24'));
  inv.addReady(port('b', 'p', '10.0.0.3/24'));
  inv.addReady(port('c', 'q', '10.1.0.2/24'));
  t.equal(inv.take('p', '10.0.0.3')?.name, 'b', 'by address');
  t.equal(inv.take('p', '10.0.0.3'), undefined, 'only once');
  t.equal(inv.take('p')?.name, 'a', 'the first of the pool');
  t.equal(inv.take('p'), undefined, 'the pool is empty');
  t.equal(inv.readyCount, 1, "the other pool's port stays");
});

t.test('counts: ready and recycling ports of the pool; handed out ones are not counted', async (t) => {
  const inv = new Inventory();
  inv.addReady(port('a', 'p', '10.0.0.2/24'));
  inv.addRecycling(port('r', 'p', '10.0.0.9/24'));
  inv.addReady(port('c', 'q', '10.1.0.2/24'));
  t.equal(inv.count('p'), 2);
  t.same(inv.known('p').map((x) => x.name).sort(), ['a', 'r']);
  inv.markHandedOut(inv.take('p')!);
  t.equal(inv.count('p'), 1, 'a handed-out port no longer counts');
  t.equal(inv.takeHandedOut('a'), 'p', 'Join finds it handed out, from its pool');
  t.equal(inv.takeHandedOut('a'), undefined, 'once');
  t.ok(inv.takeRecycling('r'));
  t.notOk(inv.takeRecycling('r'), 'once');
});

t.test('forget drops a port from every state; takeByName returns a ready one', async (t) => {
  const inv = new Inventory();
  inv.addReady(port('a', 'p', '10.0.0.2/24'));
  inv.markHandedOut(port('h', 'p', '10.0.0.5/24'));
  inv.addRecycling(port('r', 'p', '10.0.0.9/24'));
  for (const name of ['a', 'h', 'r']) inv.forget(name);
  t.equal(inv.count('p'), 0);
  t.equal(inv.takeHandedOut('h'), undefined);
  inv.addReady(port('b', 'p', '10.0.0.3/24'));
  t.equal(inv.takeByName('b')?.name, 'b');
  t.equal(inv.takeByName('b'), undefined);
  t.notOk(inv.isReady('b'));
});
