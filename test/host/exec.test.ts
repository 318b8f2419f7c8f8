/**
 * The process runner: argument arrays reach the program verbatim (no shell),
 * and every way a command can fail ends in a CommandError that says how.
 */
import t from 'tap';
import { CommandError, createRunner } from '../../src/host/exec.js';

const runner = createRunner();

t.test('arguments are passed verbatim, never through a shell', async (t) => {
  const hostile = ['$(touch /tmp/pwned)', '; echo x', "'\"", 'a b', '*', '\n'];
  const { stdout } = await runner.run('printf', ['%s\\0', ...hostile]);
  t.same(stdout.split('\0').slice(0, -1), hostile);
});

t.test('a non-zero exit is a CommandError with the first stderr line', async (t) => {
  const err = await runner.run('sh', ['-c', 'echo out; echo "first problem" >&2; echo second >&2; exit 3']).catch((e: unknown) => e);
  t.type(err, CommandError);
  const e = err as CommandError;
  t.equal(e.exitCode, 3);
  t.equal(e.signal, null);
  t.equal(e.timedOut, false);
  t.equal(e.stderr, 'first problem\nsecond\n');
  t.equal(e.stdout, 'out\n');
  t.equal(e.message, 'sh -c echo out; echo "first problem" >&2; echo second >&2; exit 3 failed (exit 3): first problem');
});

t.test('a timeout kills the child with SIGKILL', async (t) => {
  const started = Date.now();
  // A shell that ignores SIGTERM shows that the kill is not a polite one.
  const err = await runner.run('sh', ['-c', "trap '' TERM; sleep 3"], { timeoutMs: 200 }).catch((e: unknown) => e);
  t.ok(Date.now() - started < 2000, 'returns at the deadline, not when the child ends');
  t.type(err, CommandError);
  const e = err as CommandError;
  t.equal(e.timedOut, true);
  t.equal(e.signal, 'SIGKILL');
  t.equal(e.exitCode, null);
  t.match(e.message, /failed \(timed out after 200 ms\)/);
});

t.test('the default timeout comes from createRunner', async (t) => {
  const quick = createRunner({ defaultTimeoutMs: 100 });
  const err = await quick.run('sleep', ['3']).catch((e: unknown) => e);
  t.match(err, { timedOut: true, signal: 'SIGKILL' });
});

t.test('a missing program is a CommandError too', async (t) => {
  const err = await runner.run('no-such-program-ovn-docker', ['x']).catch((e: unknown) => e);
  t.type(err, CommandError);
  t.equal((err as CommandError).exitCode, null);
  t.match((err as Error).message, /no-such-program-ovn-docker x failed \(spawn ENOENT\)/);
});

t.test('a death by signal is reported as such', async (t) => {
  const err = await runner.run('sh', ['-c', 'kill -USR1 $$']).catch((e: unknown) => e);
  t.match(err, { exitCode: null, signal: 'SIGUSR1', timedOut: false });
  t.match((err as Error).message, /failed \(signal SIGUSR1\)/);
});

t.test('the environment is passed, with a C locale', async (t) => {
  const r = createRunner({ env: { PATH: process.env.PATH, OVN_TEST_MARK: 'x=1 y' } });
  const { stdout } = await r.run('sh', ['-c', 'echo "$OVN_TEST_MARK|$LC_ALL"']);
  t.equal(stdout, 'x=1 y|C\n');
});

t.test('stdin is closed, so a program reading it does not hang', async (t) => {
  const { stdout } = await runner.run('cat', [], { timeoutMs: 2000 });
  t.equal(stdout, '');
});

t.test('output beyond 64 MiB is cut off and reported, not silently truncated', async (t) => {
  const err = await runner.run('head', ['-c', String(65 * 1024 * 1024), '/dev/zero']).catch((e: unknown) => e);
  t.type(err, CommandError);
  t.match((err as Error).message, /failed \(ERR_CHILD_PROCESS_STDIO_MAXBUFFER\)/);
  t.equal((err as CommandError).timedOut, false);
});

t.test('input to a program that exits without reading it fails that command, not the process', async (t) => {
  // 20 runs: the write's EPIPE races the exit (seen 6 times in 20 before the fix, each an uncaught error).
  const input = 'x'.repeat(200_000);
  for (let i = 0; i < 20; i++) {
    const result = await runner.run('true', [], { input }).then(
      () => 'ok',
      (e: unknown) => (e instanceof CommandError ? 'failed' : 'other'),
    );
    t.ok(result === 'ok' || result === 'failed', `run ${i}: a result, no crash (${result})`);
  }
  const err = await runner.run('sh', ['-c', 'exit 4'], { input }).catch((e: unknown) => e);
  t.equal((err as CommandError).exitCode, 4, 'the exit status is what a caller sees');
});
