/**
 * Directories that connect one driver to one engine: the driver's socket
 * directory, and the engine's private plugin directory holding a spec file
 * that points at that socket (so each engine finds only its own driver).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { makeTempDir, removeDir } from './process.js';

export interface PluginDirs {
  dir: string;
  /** Where the driver listens: --plugin-dir. */
  socketDir: string;
  /** What the engine sees as /etc/docker/plugins. */
  pluginDir: string;
  remove(): Promise<void>;
}

export async function makePluginDirs(pluginName: string): Promise<PluginDirs> {
  const dir = await makeTempDir('plugins');
  const socketDir = path.join(dir, 'sock');
  const pluginDir = path.join(dir, 'plugins');
  await mkdir(socketDir);
  await mkdir(pluginDir);
  await writeFile(path.join(pluginDir, `${pluginName}.spec`), `unix://${path.join(socketDir, `${pluginName}.sock`)}\n`);
  return { dir, socketDir, pluginDir, remove: () => removeDir(dir) };
}
