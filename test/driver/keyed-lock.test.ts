/**
 * KeyedLock: work on one key runs one at a time in call order, work on
 * different keys overlaps, a failure frees the key, and a key with nothing
 * queued leaves no entry behind.
 */
import t from 'tap';
import { KeyedLock } from '../../src/driver/keyed-lock.js';

function deferred() {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets every already-settled promise callback run. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

t.test('work on one key runs alone, in call order', async (t) => {
  const lock = new KeyedLock();
  const events: string[] = [];
  const gates = [deferred(), deferred(), deferred()];
  const runs = gates.map((gate, i) =>
    lock.run('ep:1', async () => {
      events.push(`start ${i}`);
      await gate.promise;
      events.push(`end ${i}`);
      return i;
    }),
  );
  await settle();
  t.same(events, ['start 0'], 'the second waits for the first');
  gates[2]!.resolve();
  gates[1]!.resolve();
  await settle();
  t.same(events, ['start 0'], 'releasing later gates first changes nothing');
  gates[0]!.resolve();
  t.same(await Promise.all(runs), [0, 1, 2], 'each caller gets its own result');
  t.same(events, ['start 0', 'end 0', 'start 1', 'end 1', 'start 2', 'end 2']);
});

t.test('work on different keys overlaps', async (t) => {
  const lock = new KeyedLock();
  const gate = deferred();
  const started: string[] = [];
  const runs = ['ep:1', 'ep:2', 'net:1'].map((key) =>
    lock.run(key, async () => {
      started.push(key);
      await gate.promise;
    }),
  );
  await settle();
  t.same(started, ['ep:1', 'ep:2', 'net:1'], 'all three run at once');
  t.equal(lock.size, 3);
  gate.resolve();
  await Promise.all(runs);
  t.equal(lock.size, 0);
});

t.test('a failure reaches its caller and frees the key for the next', async (t) => {
  const lock = new KeyedLock();
  const gate = deferred();
  const failing = lock.run('ep:1', async () => {
    await gate.promise;
  });
  const next = lock.run('ep:1', async () => 'ran');
  gate.reject(new Error('OVN said no'));
  await t.rejects(failing, { message: 'OVN said no' });
  t.equal(await next, 'ran', 'the next one still runs');
  t.equal(lock.size, 0);
});

t.test('work that throws before its first await fails the same way', async (t) => {
  const lock = new KeyedLock();
  await t.rejects(
    lock.run('ep:1', () => {
      throw new Error('at once');
    }),
    { message: 'at once' },
  );
  t.equal(await lock.run('ep:1', async () => 'after'), 'after');
  t.equal(lock.size, 0);
});

t.test('no entry outlives its work', async (t) => {
  const lock = new KeyedLock();
  const gate = deferred();
  const first = lock.run('ep:1', () => gate.promise);
  const second = lock.run('ep:1', async () => undefined);
  t.equal(lock.size, 1, 'one entry per key, however many wait on it');
  gate.resolve();
  await first;
  t.equal(lock.size, 1, 'the key stays taken while its queue is not empty');
  await second;
  t.equal(lock.size, 0);

  const keys = Array.from({ length: 1000 }, (_, i) => `ep:${i % 50}`);
  const results = await Promise.allSettled(
    keys.map((key, i) =>
      lock.run(key, async () => {
        if (i % 7 === 0) throw new Error('some fail');
        return i;
      }),
    ),
  );
  t.equal(results.filter((r) => r.status === 'rejected').length, Math.ceil(1000 / 7));
  t.equal(lock.size, 0, 'a thousand runs on fifty keys, some failing, leave the map empty');
});
