/**
 * What a refill waits for: the container starts on a pool's warm ports that
 * were in flight when it became due, until the engine moves each one's
 * interface out of the host namespace, the endpoint ends, or the start has
 * taken too long. Pure logic: the host namespace is a set the test edits,
 * time a clock it moves; polls are real (short) timers.
 */
import t from 'tap';
import { StartsInFlight } from '../../src/warm/starts-in-flight.js';

// The poll timer does not keep a process alive (a driver shutting down must not wait for it): the test does.
const keepAlive = setInterval(() => undefined, 1000);
t.teardown(() => clearInterval(keepAlive));

/** Container ends still in the host namespace, a clock, and the tracker over them; `asked` counts the looks. */
function lab(maxStartMs = 10_000) {
  const here = new Set<string>();
  let now = 0;
  let asked = 0;
  const looked: (() => void)[] = [];
  const starts = new StartsInFlight(
    async (names) => {
      asked++;
      looked.splice(0).forEach((w) => w());
      return new Set(names.filter((n) => here.has(n)));
    },
    { maxStartMs, pollMs: 5 },
    () => now,
  );
  /** Resolves after the tracker's next look at the namespace. */
  const nextLook = () => new Promise<void>((r) => looked.push(r));
  const join = (pool: string, port: string) => {
    here.add(port);
    starts.joined(pool, port);
  };
  return { here, starts, join, nextLook, advance: (ms: number) => (now += ms), asked: () => asked };
}

/** Whether the promise has settled, after every pending callback has run. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true));
  await new Promise((r) => setImmediate(r));
  return done;
}

t.test('nothing in flight: a refill goes at once, without looking at the host', async (t) => {
  const { starts, asked } = lab();
  t.equal(await starts.settle('p'), 0);
  t.equal(asked(), 0);
});

t.test("a refill waits until the engine has moved every interface of the pool's starts, not another pool's", async (t) => {
  const { here, starts, join, nextLook } = lab();
  join('p', 'a');
  join('p', 'b');
  join('q', 'other');
  const settling = starts.settle('p');
  await nextLook();
  here.delete('a');
  await nextLook();
  t.notOk(await settled(settling), 'b is still starting');
  here.delete('b');
  t.equal(await settling, 2, 'both starts were waited for');
  t.equal(await starts.settle('p'), 0, 'and are done with');
});

t.test('starts that join while a refill waits do not hold it back', async (t) => {
  const { here, starts, join, nextLook } = lab();
  join('p', 'a');
  const settling = starts.settle('p');
  await nextLook();
  join('p', 'late');
  here.delete('a');
  t.equal(await settling, 1);
  const next = starts.settle('p');
  await nextLook();
  t.notOk(await settled(next), 'the late one holds the next refill');
  here.delete('late');
  t.equal(await next, 1);
});

t.test('a start ends with its endpoint, or when it has taken too long', async (t) => {
  const { starts, join, nextLook, advance } = lab(10_000);
  join('p', 'left');
  join('p', 'stuck');
  const settling = starts.settle('p');
  await nextLook();
  starts.ended('left');
  advance(9_999);
  await nextLook();
  t.notOk(await settled(settling), 'the stuck start still counts just short of the bound');
  advance(1);
  t.equal(await settling, 2, 'and no longer at it');
});

t.test('a host that cannot be looked at holds nothing back', async (t) => {
  const starts = new StartsInFlight(() => Promise.reject(new Error('no /proc')), { maxStartMs: 10_000, pollMs: 5 }, () => 0);
  starts.joined('p', 'a');
  t.equal(await starts.settle('p'), 1);
});

t.test('close ends the wait', async (t) => {
  const { starts, join, nextLook } = lab();
  join('p', 'a');
  const settling = starts.settle('p');
  await nextLook();
  starts.close();
  t.equal(await settling, 1);
});
