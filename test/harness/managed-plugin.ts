/**
 * The driver as a managed plugin on a test engine: scripts/build-plugin.sh
 * builds its folder (rootfs + config.json) once per test process, and each
 * engine gets its own copy with `docker plugin create`, pointed at a test
 * OVN stack through the plugin's settable mounts and variables.
 */
import { readFile } from 'node:fs/promises';
import path, { basename, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DockerEngine } from './docker.js';
import { makeTempDir, run, trackDir } from './process.js';

const BUILD_SCRIPT = fileURLToPath(new URL('../../scripts/build-plugin.sh', import.meta.url));

let built: Promise<string> | undefined;

/** The plugin's folder, built on first use (the Debian root is cached across runs: about 70 s the first time, then about 15 s). */
export function pluginFolder(): Promise<string> {
  built ??= (async () => {
    const dir = await makeTempDir('plugin-build');
    // Kept for every engine of the process; removed when it exits.
    trackDir(dir);
    const folder = path.join(dir, 'plugin');
    await run('bash', [BUILD_SCRIPT, '--dir', folder], { timeoutMs: 10 * 60_000 });
    return folder;
  })();
  return built;
}

export interface ManagedPlugin {
  /** What `docker plugin` commands take. */
  name: string;
  /** What `docker network create -d` takes. */
  driver: string;
  enabled(): Promise<boolean>;
  /** The driver's own log lines, as the engine logged them (plugin=<id>). */
  logLines(): Promise<string[]>;
  remove(): Promise<void>;
}

/** Where the plugin's host is: unix: remotes of its Open_vSwitch database and of NB. */
export interface PluginHost {
  ovsRemote: string;
  nbRemote: string;
}

/**
 * Creates the plugin on `engine`, serving `host` (its OVS and NB sockets
 * mounted where the plugin's defaults expect them, and the engine's API
 * socket), with `settings` (NAME=value) on top, and enables it.
 */
export async function installPlugin(engine: DockerEngine, host: PluginHost, name: string, settings: string[] = []): Promise<ManagedPlugin> {
  const folder = await pluginFolder();
  await engine.docker('plugin', 'create', name, folder);
  const socketOf = (remote: string) => remote.replace(/^unix:/, '');
  const ovsSock = socketOf(host.ovsRemote);
  const nbSock = socketOf(host.nbRemote);
  await engine.docker(
    'plugin', 'set', name,
    `ovs.source=${dirname(ovsSock)}`,
    `ovn.source=${dirname(nbSock)}`,
    `engine.source=${engine.host.replace(/^unix:\/\//, '')}`,
    `OVS_DB=unix:/var/run/openvswitch/${basename(ovsSock)}`,
    `OVN_NB_DB=unix:/var/run/ovn/${basename(nbSock)}`,
    ...settings,
  );
  await engine.docker('plugin', 'enable', name);
  const id = (await engine.docker('plugin', 'inspect', '-f', '{{.Id}}', name)).stdout.trim();
  return {
    name,
    driver: `${name}:latest`,
    enabled: async () => (await engine.docker('plugin', 'inspect', '-f', '{{.Enabled}}', name)).stdout.trim() === 'true',
    logLines: async () => {
      const log = await readFile(path.join(engine.dir, 'dockerd.log'), 'utf8');
      return log.split('\n').filter((l) => l.includes(`plugin=${id}`));
    },
    remove: async () => {
      await engine.docker('plugin', 'disable', '-f', name).catch(() => undefined);
      await engine.docker('plugin', 'rm', '-f', name).catch(() => undefined);
    },
  };
}
