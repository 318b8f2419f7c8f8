/**
 * The driver as its own process, started the way an operator starts it
 * (the CLI with flags), so that a test can kill -9 it and start it again.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { onExitSync, waitFor } from './process.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface DriverProcess {
  socket: string;
  readonly pid: number;
  /** SIGKILL: no cleanup, no Leave, as in a crash. */
  kill(): Promise<void>;
  /** Start again with the same flags. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

export async function startDriverProcess(opts: {
  name: string;
  pluginDir: string;
  nbRemote: string;
  ovsDb: string;
  logFile: string;
  extraArgs?: string[];
  /** Node's own flags before the driver's (a bench's `--cpu-prof`). */
  nodeArgs?: string[];
  /**
   * Runs the driver inside this network namespace (a name under
   * /var/run/netns), where the engine it serves runs: its veths must be in
   * the engine's namespace for Join. `ip netns exec` is fine here (the driver
   * needs no cgroups) and gives `ip`/`ethtool` a /sys of that namespace.
   * The socket is a file in pluginDir, reachable from every namespace.
   */
  netns?: string;
}): Promise<DriverProcess> {
  const socket = path.join(opts.pluginDir, `${opts.name}.sock`);
  const args = [
    ...(opts.nodeArgs ?? []),
    '--import',
    'tsx',
    path.join(ROOT, 'src/cli/main.ts'),
    '--name',
    opts.name,
    '--plugin-dir',
    opts.pluginDir,
    '--ovn-nb',
    opts.nbRemote,
    '--ovs-db',
    opts.ovsDb,
    ...(opts.extraArgs ?? []),
  ];
  let child: ChildProcess | undefined;

  const start = async () => {
    const log = createWriteStream(opts.logFile, { flags: 'a' });
    await once(log, 'open');
    // `ip netns exec` execs node in place: the pid is the driver's, as without it.
    const [cmd, argv] = opts.netns === undefined ? [process.execPath, args] : ['ip', ['netns', 'exec', opts.netns, process.execPath, ...args]];
    const c = spawn(cmd, argv, { cwd: ROOT, stdio: ['ignore', log, log] });
    child = c;
    // A test process that dies leaves no driver behind (one in a host
    // namespace would keep that namespace alive after its name is gone).
    const unregisterExit = onExitSync(() => c.kill('SIGKILL'));
    c.once('exit', unregisterExit);
    await waitFor(
      async () => {
        if (c.exitCode !== null) throw new Error(`driver exited with ${c.exitCode}; see ${opts.logFile}`);
        return (await canConnect(socket)) || undefined;
      },
      { timeoutMs: 30_000, intervalMs: 100, what: `driver socket ${socket}` },
    );
  };

  const stopWith = async (signal: NodeJS.Signals) => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = once(c, 'exit');
    c.kill(signal);
    await exited;
  };

  await start();
  return {
    socket,
    get pid() {
      return child?.pid ?? -1;
    },
    kill: () => stopWith('SIGKILL'),
    start,
    stop: () => stopWith('SIGTERM'),
  };
}

function canConnect(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ path: socket });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
