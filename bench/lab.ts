/** What several benches set up alike: the single-chassis lab, NB filled with other tenants' ports, the no-op plugin beside the driver. */
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { OvsdbClient } from '../src/ovsdb/index.js';
import { ensureBusyboxImage, startDockerEngine, type DockerEngine, type EngineVersion } from '../test/harness/docker.js';
import { startDriverProcess, type DriverProcess } from '../test/harness/driver-process.js';
import { startOvnStack, type OvnStack } from '../test/harness/ovn-stack.js';
import { makePluginDirs, type PluginDirs } from '../test/harness/plugin-dirs.js';

const BENCH = path.dirname(fileURLToPath(import.meta.url));

/** Put `count` ports on a separate switch, in batches, as other tenants' load. */
export async function fillNb(nb: OvsdbClient, count: number): Promise<void> {
  await nb.transaction((tx) => {
    tx.insert('Logical_Switch', { name: 'bench-fill' });
  });
  for (let done = 0; done < count; done += 1000) {
    await nb.transaction((tx) => {
      const ports = [];
      for (let i = done; i < Math.min(count, done + 1000); i++) ports.push(tx.insert('Logical_Switch_Port', { name: `fill-${i}`, addresses: ['unknown'] }));
      tx.mutate('Logical_Switch', [['name', '==', 'bench-fill']], [['ports', 'insert', ports]]);
    });
  }
}

export interface NoopPlugin {
  name: string;
  stop(): Promise<void>;
}

/** bench/noop-plugin.ts as its own process (as the driver is), found by the engine through a spec file beside the driver's. */
export async function startNoopPlugin(dirs: PluginDirs, name: string): Promise<NoopPlugin> {
  const socket = path.join(dirs.socketDir, `${name}.sock`);
  await writeFile(path.join(dirs.pluginDir, `${name}.spec`), `unix://${socket}\n`);
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(BENCH, 'noop-plugin.ts'), '--socket', socket], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    void exited.then(() => reject(new Error('the no-op plugin exited before it listened')));
  });
  return {
    name,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

export interface SingleChassisLab {
  /** The driver's plugin name (its networks' `-d`). */
  name: string;
  dirs: PluginDirs;
  stack: OvnStack;
  engine: DockerEngine;
  driver: DriverProcess;
  /** The no-op plugin, when asked for. */
  noop?: NoopPlugin;
  image: string;
  /** Everything started here, in reverse order (safe after a partial start). */
  stop(): Promise<void>;
}

/**
 * Single-chassis OVN (userspace datapath) in the root namespace, Debian's
 * dockerd, and the driver as its own process as deployed (names from the
 * engine's API, log level warn), with `--masquerade false`: the root
 * namespace's firewall is the machine's, and a bench does not touch it.
 */
export async function startSingleChassisLab(opts: { engine: EngineVersion; name: string; bridge?: boolean; noop?: boolean }): Promise<SingleChassisLab> {
  const dirs = await makePluginDirs(opts.name);
  const started: { stack?: OvnStack; engine?: DockerEngine; driver?: DriverProcess; noop?: NoopPlugin } = {};
  const stop = async () => {
    await started.engine?.stop();
    await started.noop?.stop();
    await started.driver?.stop();
    await started.stack?.stop();
    await dirs.remove();
  };
  try {
    const stack = (started.stack = await startOvnStack());
    if (opts.noop) started.noop = await startNoopPlugin(dirs, `noop${opts.name}`);
    const engine = (started.engine = await startDockerEngine({ engine: opts.engine, pluginDir: dirs.pluginDir, ...(opts.bridge ? { bridge: true } : {}) }));
    const driver = (started.driver = await startDriverProcess({
      name: opts.name,
      pluginDir: dirs.socketDir,
      nbRemote: stack.nbRemote,
      ovsDb: stack.ovsRemote,
      // BENCH_DRIVER_LOG keeps the driver's log, at debug level, where it names (for a timeline of a run).
      logFile: process.env.BENCH_DRIVER_LOG ?? path.join(dirs.dir, 'driver.log'),
      extraArgs: ['--log-level', process.env.BENCH_DRIVER_LOG ? 'debug' : 'warn', '--masquerade', 'false', '--docker-host', engine.host],
      // Node refuses --cpu-prof in NODE_OPTIONS; this profiles the driver alone.
      nodeArgs: (process.env.BENCH_DRIVER_NODE_ARGS ?? '').split(' ').filter(Boolean),
    }));
    const image = await ensureBusyboxImage(engine);
    return { name: opts.name, dirs, stack, engine, driver, ...(started.noop ? { noop: started.noop } : {}), image, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
