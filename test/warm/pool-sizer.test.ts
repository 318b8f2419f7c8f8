/** How a pool's size follows container starts (src/warm/pool-sizer.ts): pure logic, real timers kept short. */
import t from 'tap';
import { PoolSizer } from '../../src/warm/pool-sizer.js';

/** A sizer whose shrinks are recorded, and a promise for the next one. */
function sizer(min: number, max: number, idleMs = 60_000) {
  const shrinks: { pool: string; size: number; at: number }[] = [];
  let wake: () => void = () => undefined;
  const s = new PoolSizer({ min, max, idleMs }, (pool, size) => {
    shrinks.push({ pool, size, at: Date.now() });
    wake();
  });
  // The sizer's timers are unref'd (they must not keep the driver alive): this keeps the test's process up.
  const nextShrink = () => {
    const alive = setInterval(() => undefined, 1000);
    return new Promise<void>((resolve) => (wake = resolve)).finally(() => clearInterval(alive));
  };
  return { s, shrinks, nextShrink };
}

t.test('a pool grows by one for each start that found it empty, up to the bound', async (t) => {
  const { s } = sizer(2, 5);
  t.teardown(() => s.close());
  t.equal(s.size('p'), 2, 'min while nothing happened');
  t.equal(s.started('p', false), 2, 'a start served by a warm port: no growth');
  t.equal(s.started('p', true), 3, 'one short: one more');
  t.equal(s.started('p', true), 4);
  t.equal(s.started('p', true), 5);
  t.equal(s.started('p', true), 5, 'never past max');
  t.equal(s.size('q'), 2, 'per pool');
});

t.test('max below min: min wins, so --warm-ports alone keeps its meaning', async (t) => {
  const { s } = sizer(4, 1);
  t.teardown(() => s.close());
  t.equal(s.started('p', true), 4);
});

t.test('an idle pool halves toward min, once per idle period, and says so', async (t) => {
  const { s, shrinks, nextShrink } = sizer(2, 32, 40);
  t.teardown(() => s.close());
  for (let i = 0; i < 9; i++) s.started('p', true);
  t.equal(s.size('p'), 11);
  const lastStart = Date.now();
  let shrunk = nextShrink();
  await shrunk;
  t.ok(shrinks[0]!.at - lastStart >= 35, 'not before the idle period has passed');
  t.same(shrinks.map((x) => x.size), [6], '2 + (11 - 2) / 2, rounded down');
  t.equal(s.size('p'), 6);
  for (const want of [4, 3, 2]) {
    shrunk = nextShrink();
    await shrunk;
    t.equal(s.size('p'), want, `then ${want}`);
  }
  t.same(shrinks.map((x) => x.size), [6, 4, 3, 2], 'and stops at min: no timer is left');
});

t.test('a start puts the idle period off', async (t) => {
  const { s, shrinks, nextShrink } = sizer(2, 32, 60);
  t.teardown(() => s.close());
  s.started('p', true);
  s.started('p', true);
  const shrunk = nextShrink();
  await new Promise((r) => setTimeout(r, 40));
  const lastStart = Date.now();
  s.started('p', false);
  await shrunk;
  t.ok(shrinks[0]!.at - lastStart >= 55, 'counted from the last start');
  t.equal(shrinks[0]!.size, 3);
});

t.test('after a restart, the ports that survived set the size until the pool is idle', async (t) => {
  const { s, nextShrink } = sizer(2, 8, 30);
  t.teardown(() => s.close());
  s.resume('p', 12);
  t.equal(s.size('p'), 8, 'bounded by max');
  s.resume('q', 1);
  t.equal(s.size('q'), 2, 'never below min');
  await nextShrink();
  t.equal(s.size('p'), 5);
  s.forget('p');
  t.equal(s.size('p'), 2, 'forgotten with its last network');
});
