/**
 * The driver as a managed plugin on a test engine: scripts/build-plugin.sh
 * builds its folder (rootfs + config.json) once per test process, and each
 * engine gets its own copy with `docker plugin create`, pointed at a test
 * OVN stack through the plugin's settable mounts and variables.
 */
import { readFile } from 'node:fs/promises';
import path, { basename, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureBusyboxImage, startDockerEngine, type DockerEngine, type EngineVersion } from './docker.js';
import { startOvnStack, type OvnStack } from './ovn-stack.js';
import { makePki } from './pki.js';
import { makeTempDir, removeDir, run, trackDir } from './process.js';

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

/** One engine with the plugin enabled on a single-chassis OVN stack, and the docker CLI helpers the tests share. */
export interface PluginLab {
  stack: OvnStack;
  engine: DockerEngine;
  plugin: ManagedPlugin;
  /** The busybox image's id. */
  image: string;
  /** docker CLI on this engine; stdout, trimmed. */
  docker(...args: string[]): Promise<string>;
  exec(container: string, ...cmd: string[]): Promise<string>;
  /** A container's address on a network. */
  ipOf(container: string, network: string): Promise<string>;
  /** One ping; rejects (with the output) when it is not answered. */
  pings(from: string, to: string): Promise<boolean>;
  /** The plugin, the engine, the stack: call after removing the test's own containers and networks. */
  stop(): Promise<void>;
}

/**
 * Starts an OVN stack and an engine whose plugin directory is empty (so every call goes
 * through the managed plugin), and installs the plugin `name` with `settings`.
 */
export async function startPluginLab(
  version: EngineVersion,
  name: string,
  settings: string[],
  opts: { nbSsl?: boolean } = {},
): Promise<PluginLab> {
  const emptyPluginDir = await makeTempDir('no-plugins');
  const pkiDir = opts.nbSsl ? await makeTempDir('plugin-pki') : undefined;
  let stack: OvnStack | undefined;
  let engine: DockerEngine | undefined;
  let plugin: ManagedPlugin | undefined;
  const stop = async () => {
    await plugin?.remove();
    await engine?.stop();
    await stack?.stop();
    await removeDir(emptyPluginDir);
    if (pkiDir) await removeDir(pkiDir);
  };
  try {
    const pki = pkiDir ? await makePki(pkiDir) : undefined;
    stack = await startOvnStack(pki ? { nbSsl: pki } : {});
    engine = await startDockerEngine({ engine: version, pluginDir: emptyPluginDir });
    // An ssl: NB: the client's files in the plugin's pki mount, named by their paths inside it.
    const inPki = (file: string) => `/etc/ovn/${basename(file)}`;
    const ssl = pki
      ? [`pki.source=${pkiDir}`, `OVN_NB_DB=${stack.nb.sslRemote}`, `OVN_NB_PRIVATE_KEY=${inPki(pki.clientKey)}`,
         `OVN_NB_CERTIFICATE=${inPki(pki.clientCert)}`, `OVN_NB_CA_CERT=${inPki(pki.caCert)}`]
      : [];
    plugin = await installPlugin(engine, stack, name, [...ssl, ...settings]);
    const image = await ensureBusyboxImage(engine);
    const e = engine;
    const docker = (...args: string[]) => e.docker(...args).then((r) => r.stdout.trim());
    const exec = (container: string, ...cmd: string[]) => docker('exec', container, ...cmd);
    return {
      stack,
      engine,
      plugin,
      image,
      docker,
      exec,
      ipOf: (container, network) => docker('inspect', '-f', `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`, container),
      pings: (from, to) => exec(from, 'ping', '-c1', '-W2', to).then((out) => /1 packets received/.test(out)),
      stop,
    };
  } catch (e) {
    await stop().catch(() => undefined);
    throw e;
  }
}
