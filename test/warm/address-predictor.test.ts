/**
 * Where warm ports of a network of Docker's IPAM go: above the floor Docker
 * was seen to give, and never at an address an endpoint is being created
 * with. Pure logic.
 */
import t from 'tap';
import { AddressPredictor, below } from '../../src/warm/address-predictor.js';

t.test('below compares addresses numerically', async (t) => {
  t.ok(below('10.0.0.9', '10.0.0.10'));
  t.notOk(below('10.0.0.10', '10.0.0.9'));
  t.notOk(below('10.0.0.9', '10.0.0.9'));
});

t.test('the floor: set by an address given past a ready warm port, lowered by one given below it', async (t) => {
  const p = new AddressPredictor();
  p.noteAllocation('s', '10.0.0.2/24', true, ['10.0.0.3/24']);
  t.equal(p.floor('s'), undefined, 'a warm port taken: Docker gives the lowest, no floor');
  p.noteAllocation('s', '10.0.0.20/24', false, ['10.0.0.3/24']);
  t.equal(p.floor('s'), '10.0.0.20', 'given past a ready port (an --ip-range): the floor moves up');
  p.noteAllocation('s', '10.0.0.30/24', false, []);
  t.equal(p.floor('s'), '10.0.0.20', 'an address above it with no ready port skipped: unchanged');
  p.noteAllocation('s', '10.0.0.10/24', false, []);
  t.equal(p.floor('s'), '10.0.0.10', 'one below it: back down');
  p.forget('s');
  t.equal(p.floor('s'), undefined, 'forgotten with the set');
});

t.test('a creation avoids addresses held by endpoints, and an endpoint waits for a creation at its address', async (t) => {
  const p = new AddressPredictor();
  const release = await p.hold('s', '10.0.0.5/24');
  const hints: string[][] = [];
  await p.create('s', async (hint) => {
    hints.push([...(hint.avoid?.() ?? [])]);
  });
  t.same(hints, [['10.0.0.5']], 'the held address is avoided');
  release();
  await p.create('s', async (hint) => {
    hints.push([...(hint.avoid?.() ?? [])]);
  });
  t.same(hints[1], [], 'released: no longer');

  let finish!: () => void;
  const creation = p.create('s', (hint) => {
    hint.onChosen?.(['10.0.0.6', '10.0.0.7']);
    return new Promise<void>((resolve) => (finish = resolve));
  });
  let held = false;
  // The second address of a batch: every port of it is made in one transaction.
  const holding = p.hold('s', '10.0.0.7').then((r) => ((held = true), r));
  const other = await p.hold('s', '10.0.0.8');
  t.pass('an endpoint at another address does not wait');
  other();
  await Promise.resolve();
  t.notOk(held, 'one at the address being created waits');
  finish();
  await creation;
  (await holding)();
  t.ok(held, 'until the creation is done');
});

t.test('the floor is passed to a creation', async (t) => {
  const p = new AddressPredictor();
  p.noteAllocation('s', '10.0.0.20/24', false, ['10.0.0.2/24']);
  const floor = await p.create('s', async (hint) => hint.floor);
  t.equal(floor, '10.0.0.20');
});
