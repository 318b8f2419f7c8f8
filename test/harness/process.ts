/**
 * Process plumbing for the throw-away OVS/OVN servers the tests run: commands
 * with argument arrays only, daemons tracked by pid so that nothing outlives
 * the test process, and polling helpers with readable timeout errors.
 */
import { execFile, spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export class CommandError extends Error {
  constructor(
    readonly cmd: string,
    readonly args: readonly string[],
    readonly exitCode: number | string | null,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    super(`${cmd} ${args.join(' ')} failed (exit ${String(exitCode)}): ${stderr.trim() || stdout.trim()}`);
    this.name = 'CommandError';
  }
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 * 1024 * 1024, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        if (!err) return resolve({ stdout, stderr });
        // execFile reports a timeout as a kill, not as an exit code.
        const code = err.killed ? `killed after ${opts.timeoutMs ?? 30_000} ms` : (err.code ?? null);
        reject(new CommandError(cmd, args, code, stdout, stderr));
      },
    );
  });
}

/**
 * Every OVS/OVN tool falls back to /var/run/openvswitch, /var/run/ovn, /etc/…
 * for whatever path is not given explicitly; pointing all of them at the
 * private dir keeps a forgotten default from reaching a system instance.
 */
export function isolatedEnv(dir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const p of ['OVS', 'OVN']) {
    for (const kind of ['RUNDIR', 'DBDIR', 'LOGDIR', 'SYSCONFDIR']) env[`${p}_${kind}`] = dir;
  }
  return env;
}

export function makeTempDir(kind: string): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), `ovn-test-${kind}-`));
}

// ---- registry -------------------------------------------------------------

const livePids = new Set<number>();
const liveDirs = new Set<string>();
const cleanups = new Set<() => Promise<void>>();
const exitCleanups = new Set<() => void>();

/** Registers a graceful stop for stopAll(); returns the unregister function. */
export function registerCleanup(fn: () => Promise<void>): () => void {
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

/**
 * Registers a synchronous last resort for a dying process, run after every
 * tracked pid got SIGKILL; returns the unregister function.
 */
export function onExitSync(fn: () => void): () => void {
  exitCleanups.add(fn);
  return () => exitCleanups.delete(fn);
}

export function trackDir(dir: string): void {
  liveDirs.add(dir);
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  liveDirs.delete(dir);
}

/** Stops everything still registered, newest first (dependents before what they depend on). */
export async function stopAll(): Promise<void> {
  const errors: unknown[] = [];
  for (const fn of [...cleanups].reverse()) {
    cleanups.delete(fn);
    try {
      await fn();
    } catch (e) {
      errors.push(e);
    }
  }
  for (const pid of [...livePids]) await stopPid(pid, { graceMs: 2000 }).catch((e: unknown) => errors.push(e));
  for (const dir of [...liveDirs]) await removeDir(dir).catch((e: unknown) => errors.push(e));
  if (errors.length > 0) throw new AggregateError(errors, 'stopAll: some cleanups failed');
}

function killLeftoversSync(): void {
  for (const pid of livePids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  livePids.clear();
  for (const fn of exitCleanups) {
    try {
      fn();
    } catch {
      // best effort: the process is going down anyway
    }
  }
  exitCleanups.clear();
  for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
  liveDirs.clear();
}

process.on('exit', killLeftoversSync);
// A signal death skips 'exit'; clean up, then re-raise so the default action
// (or whoever else listens) still decides what happens to this process.
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  const onSignal = (): void => {
    killLeftoversSync();
    process.removeListener(sig, onSignal);
    process.kill(process.pid, sig);
  };
  process.on(sig, onSignal);
}

// ---- daemons --------------------------------------------------------------

export interface DaemonOptions {
  pidfile: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

/**
 * Starts an OVS-style daemon with --detach --pidfile=… and resolves with the
 * daemon's pid. OVS's --detach parent exits only once the child finished
 * initialising, so its exit status is the startup verdict.
 */
export async function startDaemon(cmd: string, args: readonly string[], opts: DaemonOptions): Promise<number> {
  const fullArgs = [...args, '--detach', `--pidfile=${opts.pidfile}`];
  const timeoutMs = opts.timeoutMs ?? 30_000;
  await new Promise<void>((resolve, reject) => {
    const child = spawn(cmd, fullArgs, { env: opts.env ?? process.env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new CommandError(cmd, fullArgs, `no detach within ${timeoutMs} ms`, '', stderr));
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    // 'exit', not 'close': the detached grandchild may hold stderr a little longer.
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      child.stderr.destroy();
      if (code === 0) resolve();
      else reject(new CommandError(cmd, fullArgs, code ?? signal, '', stderr));
    });
  });
  const pid = Number.parseInt((await readFile(opts.pidfile, 'utf8')).trim(), 10);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`${cmd}: bad pidfile ${opts.pidfile}`);
  livePids.add(pid);
  return pid;
}

/** Alive and not a zombie: our daemons are reparented to an init that may reap late. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function signalPid(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // exited in between
  }
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (isAlive(pid)) {
    if (Date.now() >= deadline) return false;
    await sleep(20);
  }
  return true;
}

/** SIGTERM, then SIGKILL once graceMs is up; resolves when the pid is gone. */
export async function stopPid(pid: number, opts: { graceMs?: number } = {}): Promise<void> {
  if (isAlive(pid)) {
    signalPid(pid, 'SIGTERM');
    // A test may have left it SIGSTOPped; SIGTERM would stay pending forever.
    signalPid(pid, 'SIGCONT');
    if (!(await waitGone(pid, opts.graceMs ?? 3000))) {
      signalPid(pid, 'SIGKILL');
      if (!(await waitGone(pid, 5000))) throw new Error(`pid ${pid} survived SIGKILL`);
    }
  }
  livePids.delete(pid);
}

/** Sends signal (SIGKILL by default) and, for a fatal one, waits until the pid is gone. */
export async function killPid(pid: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  signalPid(pid, signal);
  if (signal === 'SIGKILL' || signal === 'SIGTERM') {
    if (signal === 'SIGTERM') signalPid(pid, 'SIGCONT');
    if (!(await waitGone(pid, 5000))) throw new Error(`pid ${pid} still alive after ${signal}`);
    livePids.delete(pid);
  }
}

// ---- small utilities ------------------------------------------------------

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * A port that was free a moment ago. Callers that hand it to a daemon must
 * check the daemon really bound it (see ovsdb-server.ts): someone else may
 * grab it in between.
 */
export function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => {
        if (addr && typeof addr === 'object') resolve(addr.port);
        else reject(new Error('no port from listen(0)'));
      });
    });
  });
}

export interface WaitOptions {
  timeoutMs?: number;
  intervalMs?: number;
  what: string;
}

/**
 * Polls until predicate returns something other than undefined/false and
 * returns that. A throwing predicate counts as "not yet"; its last error is
 * quoted in the timeout message.
 */
export async function waitFor<T>(
  predicate: () => T | undefined | false | Promise<T | undefined | false>,
  opts: WaitOptions,
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const started = Date.now();
  let lastError: unknown;
  for (;;) {
    try {
      const v = await predicate();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() - started >= timeoutMs) {
      const why = lastError instanceof Error ? `; last error: ${lastError.message}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${opts.what}${why}`);
    }
    await sleep(opts.intervalMs ?? 50);
  }
}
