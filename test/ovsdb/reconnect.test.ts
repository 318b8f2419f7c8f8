/**
 * The reconnect loop alone: remotes in turn, backoff between failed
 * attempts, stop() and hurry() ending the pause. No server: the attempts are
 * functions that record when they ran. Math.random is pinned so that each
 * pause is its longest.
 */
import t, { type Test } from 'tap';
import { Reconnector } from '../../src/ovsdb/reconnect.js';

const LONG = { initialMs: 60_000, maxMs: 60_000 };

function pinRandom(t: Test): void {
  const random = Math.random;
  Math.random = () => 0.99;
  t.teardown(() => {
    Math.random = random;
  });
}

/** Runs `loop` with an attempt that records its start times and answers with `result(n)`. */
function record(loop: Reconnector, result: (n: number) => boolean, onAttempt: (n: number) => void = () => undefined) {
  const starts: number[] = [];
  const names: string[] = [];
  const done = loop.run(async (_remote, name) => {
    starts.push(Date.now());
    names.push(name);
    onAttempt(starts.length);
    return result(starts.length);
  });
  return { starts, names, done };
}

t.test('each remote is tried in turn, once a round', async (t) => {
  const remotes = ['tcp:127.0.0.1:6641', 'tcp:127.0.0.1:6642', 'unix:/run/nb.sock'];
  const loop = new Reconnector(remotes.join(','), { initialMs: 1, maxMs: 1 });
  t.equal(loop.remotes.length, 3);
  const { names, done } = record(loop, () => false, (n) => {
    if (n === 6) loop.stop();
  });
  await done;
  t.same(names.slice(0, 3).sort(), [...remotes].sort(), 'one round tries every remote');
  t.same(names.slice(3), names.slice(0, 3), 'the next round keeps the order');
});

t.test('a failed round pauses with backoff; stop() ends the pause at once', async (t) => {
  pinRandom(t);
  const loop = new Reconnector('tcp:127.0.0.1:6641', LONG);
  const { starts, done } = record(loop, () => false);
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.equal(starts.length, 1, 'no second attempt within the backoff');
  const stopping = Date.now();
  loop.stop();
  await done;
  t.ok(loop.stopped);
  t.ok(Date.now() - stopping < 100, 'run() returns at once');
  t.equal(starts.length, 1);
});

t.test('hurry() shortens the pause, but attempts stay a second apart', async (t) => {
  pinRandom(t);
  const loop = new Reconnector('tcp:127.0.0.1:6641', LONG);
  const { starts, done } = record(loop, () => false, (n) => {
    if (n === 2) loop.stop();
  });
  await new Promise((resolve) => setTimeout(resolve, 50));
  loop.hurry();
  await done;
  t.equal(starts.length, 2);
  const gap = starts[1]! - starts[0]!;
  t.ok(gap >= 990 && gap < 1500, `second attempt ${gap} ms after the first`);
});

t.test('an attempt that got in sync is followed by a short pause only', async (t) => {
  pinRandom(t);
  const loop = new Reconnector('tcp:127.0.0.1:6641', LONG);
  const { starts, done } = record(loop, (n) => n === 1, (n) => {
    if (n === 3) loop.stop();
  });
  const timer = setTimeout(() => loop.stop(), 500);
  await done;
  clearTimeout(timer);
  t.equal(starts.length, 2, 'the attempt after a session comes within 50 ms; the one after a failure waits');
  t.ok(starts[1]! - starts[0]! < 100);
});
