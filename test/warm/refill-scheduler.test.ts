/**
 * When warm ports are refilled: once per pool however often asked while a
 * refill waits, one at a time per pool, and after a failure again later,
 * backing off. Pure logic with real (short) timers; every wait is for an
 * event, never a fixed sleep.
 */
import t from 'tap';
import { pino } from 'pino';
import { RefillScheduler } from '../../src/warm/refill-scheduler.js';
import { captureLog, LEVEL } from '../harness/driver-log.js';

// The scheduler's timers do not keep a process alive (a driver shutting down must not wait for them): the test does.
const keepAlive = setInterval(() => undefined, 1000);
t.teardown(() => clearInterval(keepAlive));

/** A fill function that records its calls and lets the test end each one. */
function recorder() {
  const calls: { pool: string; at: number; finish: (err?: Error) => void }[] = [];
  const waiters: (() => void)[] = [];
  const fill = (pool: string) =>
    new Promise<void>((resolve, reject) => {
      calls.push({ pool, at: Date.now(), finish: (err) => (err ? reject(err) : resolve()) });
      waiters.splice(0).forEach((w) => w());
    });
  const called = async (n: number) => {
    while (calls.length < n) await new Promise<void>((r) => waiters.push(r));
    return calls[n - 1]!;
  };
  return { calls, fill, called };
}

t.test('asked again while a refill waits: one refill', async (t) => {
  const r = recorder();
  const s = new RefillScheduler(r.fill, { retryDelayMs: 10, maxRetryDelayMs: 100 }, pino({ level: 'silent' }));
  t.teardown(() => s.close());
  s.schedule('a', 30);
  s.schedule('a', 0);
  s.schedule('a', 0);
  (await r.called(1)).finish();
  s.schedule('a', 0);
  const second = await r.called(2);
  second.finish();
  t.equal(r.calls.length, 2, 'the three early requests made one refill; the later one another');
});

t.test('postponed: a waiting refill starts its delay again from the last request, and still runs once', async (t) => {
  const r = recorder();
  const s = new RefillScheduler(r.fill, { retryDelayMs: 10, maxRetryDelayMs: 100 }, pino({ level: 'silent' }));
  t.teardown(() => s.close());
  const t0 = Date.now();
  s.schedule('a', 60, true);
  let last = t0;
  for (let i = 0; i < 4; i++) {
    await new Promise((resolve) => setTimeout(resolve, 30));
    last = Date.now();
    s.schedule('a', 60, true);
  }
  const call = await r.called(1);
  call.finish();
  t.ok(call.at - last >= 55, `started ${call.at - last} ms after the last request, its delay`);
  t.ok(call.at - t0 >= 170, 'not at the first request\'s delay');
  s.schedule('a', 0);
  (await r.called(2)).finish();
  t.equal(r.calls.length, 2, 'five postponing requests made one refill');
});

t.test('one refill per pool at a time; other pools do not wait', async (t) => {
  const r = recorder();
  const s = new RefillScheduler(r.fill, { retryDelayMs: 10, maxRetryDelayMs: 100 }, pino({ level: 'silent' }));
  t.teardown(() => s.close());
  s.schedule('a', 0);
  const first = await r.called(1);
  s.schedule('a', 0); // its timer fires while the first refill runs: it runs after it
  s.schedule('b', 0);
  const b = await r.called(2);
  t.equal(b.pool, 'b', "pool b's refill starts while pool a's still runs");
  b.finish();
  first.finish();
  const again = await r.called(3);
  t.equal(again.pool, 'a', "a's second refill starts only after its first ended");
  again.finish();
});

t.test('a failed refill is retried, each time later, and the recovery is logged', async (t) => {
  const r = recorder();
  const { log, entries } = captureLog();
  const s = new RefillScheduler(r.fill, { retryDelayMs: 20, maxRetryDelayMs: 40 }, log);
  t.teardown(() => s.close());
  s.schedule('a', 0);
  (await r.called(1)).finish(new Error('NB down'));
  const second = await r.called(2);
  second.finish(new Error('NB down'));
  const third = await r.called(3);
  third.finish();
  const gap1 = second.at - r.calls[0]!.at;
  const gap2 = third.at - second.at;
  t.ok(gap1 >= 19, `first retry after the retry delay (${gap1} ms)`);
  t.ok(gap2 >= 39, `second after twice that, capped (${gap2} ms)`);
  const warnings = entries.filter((e) => e.level === LEVEL.warn);
  t.same(warnings.map((e) => [e.failures, e.retryInMs]), [[1, 20], [2, 40]], 'each failure logged with its retry delay');
  await s.close();
  t.ok(entries.some((e) => e.msg === 'warm ports can be made again' && e.pool === 'a'), 'and the recovery');
});

t.test('cancel waits for the running refill; close stops the waiting ones', async (t) => {
  const r = recorder();
  const s = new RefillScheduler(r.fill, { retryDelayMs: 10, maxRetryDelayMs: 100 }, pino({ level: 'silent' }));
  s.schedule('a', 0);
  const running = await r.called(1);
  let cancelled = false;
  const cancel = s.cancel('a').then(() => (cancelled = true));
  await Promise.resolve();
  t.notOk(cancelled, 'cancel waits while the refill runs');
  running.finish();
  await cancel;
  t.ok(cancelled, 'and returns once it ended');
  s.schedule('a', 5);
  await s.close();
  s.schedule('a', 0);
  // A scheduler left open, due later than both: once it ran, the closed one's timers would have fired.
  const witness = recorder();
  const open = new RefillScheduler(witness.fill, { retryDelayMs: 10, maxRetryDelayMs: 100 }, pino({ level: 'silent' }));
  t.teardown(() => open.close());
  open.schedule('w', 30);
  (await witness.called(1)).finish();
  t.equal(r.calls.length, 1, 'after close, nothing waiting or asked for ran');
});
