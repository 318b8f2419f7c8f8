/** What several benches set up alike: NB filled with other tenants' ports, and the no-op plugin beside the driver. */
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { OvsdbClient } from '../src/ovsdb/index.js';
import type { PluginDirs } from '../test/harness/plugin-dirs.js';

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
