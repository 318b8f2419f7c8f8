/**
 * The Docker harness on both engines it offers: each starts, runs a busybox
 * container without a network, finds a remote network plugin only through
 * its private plugin dir, gets a bridge of its own, and leaves no process,
 * mount, directory or interface behind.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import t, { type Test } from 'tap';
import { dockerAvailability, ensureBusyboxImage, startDockerEngine, type DockerEngine, type EngineVersion } from './docker.js';
import { isAlive, makeTempDir, run, stopAll, trackDir } from './process.js';

t.teardown(stopAll);

const ENGINES: readonly EngineVersion[] = ['20.10', '26.1'];
const availability = new Map(await Promise.all(ENGINES.map(async (e) => [e, await dockerAvailability(e)] as const)));

function skipReason(engine: EngineVersion): string | false {
  const a = availability.get(engine);
  return a?.ok ? false : `engine ${engine} unavailable: ${a?.reason ?? '?'}`;
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = Date.now();
  const value = await fn();
  return { value, ms: Date.now() - started };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
}

/** Mount lines naming the dir, read here rather than through the harness under test. */
function mountsMentioning(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.includes(dir));
}

/** Live processes whose command line names the dir: engine, containerd, shims. */
function processesMentioning(dir: string): number[] {
  return readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir) && isAlive(pid);
      } catch {
        return false;
      }
    });
}

async function stopAndCheckGone(t: Test, engine: DockerEngine, extraDirs: string[] = []): Promise<void> {
  const { ms } = await timed(() => engine.stop());
  t.comment(`${engine.engine}: stop ${ms} ms`);
  t.notOk(isAlive(engine.pid), 'dockerd gone');
  t.notOk(isAlive(engine.containerdPid), 'containerd gone');
  t.same(processesMentioning(engine.dir), [], 'no shim or other process of this engine left');
  for (const d of [engine.dir, ...extraDirs]) t.same(mountsMentioning(d), [], `no mounts of ${d}`);
  t.notOk(existsSync(engine.dir), 'engine dir removed');
  if (engine.bridge) {
    await t.rejects(run('ip', ['link', 'show', engine.bridge.name]), 'bridge removed');
  }
}

// ---- a remote network plugin that only records what it is sent -------------

interface PluginCall {
  method: string;
  body: unknown;
}

interface ProbePlugin {
  calls: PluginCall[];
  close(): Promise<void>;
}

const PROBE_REPLIES: Record<string, object> = {
  'Plugin.Activate': { Implements: ['NetworkDriver'] },
  'NetworkDriver.GetCapabilities': { Scope: 'local' },
  'NetworkDriver.CreateNetwork': {},
  'NetworkDriver.DeleteNetwork': {},
};

async function startProbePlugin(socket: string): Promise<ProbePlugin> {
  const calls: PluginCall[] = [];
  const server = http.createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => {
      raw += d;
    });
    req.on('end', () => {
      const method = (req.url ?? '').replace(/^\//, '');
      let body: unknown = raw;
      try {
        body = raw.trim() === '' ? null : (JSON.parse(raw) as unknown);
      } catch {
        // keep the raw text: the assertion will show it
      }
      calls.push({ method, body });
      const reply = PROBE_REPLIES[method];
      res.writeHead(reply ? 200 : 404, { 'Content-Type': 'application/vnd.docker.plugins.v1.2+json' });
      res.end(JSON.stringify(reply ?? { Err: `${method} is not implemented by the probe` }));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socket, resolve);
  });
  return {
    calls,
    close: () =>
      new Promise<void>((resolve) => {
        // The engine keeps its connection alive; close() alone would wait for it.
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

interface CreateNetworkBody {
  NetworkID: string;
  IPv4Data: { Pool: string; Gateway?: string }[];
}

function bodyOf(calls: PluginCall[], method: string): unknown {
  return calls.find((c) => c.method === method)?.body;
}

/** A plugin named "probe" known to an engine only through a spec file in its plugin dir. */
async function probeSetup(t: Test): Promise<{ pluginDir: string; plugin: ProbePlugin }> {
  const dir = await makeTempDir('probe');
  trackDir(dir);
  const pluginDir = path.join(dir, 'plugins');
  await mkdir(pluginDir);
  const socket = path.join(dir, 'probe.sock');
  const plugin = await startProbePlugin(socket);
  t.teardown(() => plugin.close());
  await writeFile(path.join(pluginDir, 'probe.spec'), `unix://${socket}\n`);
  return { pluginDir, plugin };
}

async function createAndRemoveProbeNetwork(t: Test, engine: DockerEngine, plugin: ProbePlugin, subnet: string): Promise<void> {
  const networkId = (await engine.docker('network', 'create', '-d', 'probe', '--subnet', subnet, 'probenet')).stdout.trim();
  t.match(networkId, /^[0-9a-f]{64}$/, 'network created');
  t.same(
    plugin.calls.map((c) => c.method),
    ['Plugin.Activate', 'NetworkDriver.GetCapabilities', 'NetworkDriver.CreateNetwork'],
    'activation, capabilities, then CreateNetwork reached our socket',
  );
  const created = bodyOf(plugin.calls, 'NetworkDriver.CreateNetwork') as CreateNetworkBody;
  t.equal(created.NetworkID, networkId, 'CreateNetwork names the network');
  t.equal(created.IPv4Data[0]?.Pool, subnet, 'CreateNetwork carries the subnet');

  await engine.docker('network', 'rm', 'probenet');
  t.same(bodyOf(plugin.calls, 'NetworkDriver.DeleteNetwork'), { NetworkID: networkId }, 'network rm sends DeleteNetwork');
}

// ---- per engine -------------------------------------------------------------

for (const version of ENGINES) {
  t.test(`engine ${version}`, { skip: skipReason(version) }, async (t) => {
    t.test('starts, imports busybox, runs a --net none container, stops clean', async (t) => {
      const { value: engine, ms } = await timed(() => startDockerEngine({ engine: version }));
      t.teardown(() => engine.stop());
      t.comment(`${version}: startDockerEngine ${ms} ms (containerd spawn to docker version answering: ${engine.startupMs} ms)`);
      t.match(engine.version, new RegExp(`^${version.replace('.', '\\.')}\\.`), `docker version reports ${engine.version}`);
      t.match(engine.host, /^unix:\/\/\/.*\/docker\.sock$/);
      t.ok(isAlive(engine.pid) && isAlive(engine.containerdPid), 'dockerd and its containerd run');

      const first = await timed(() => ensureBusyboxImage(engine));
      t.match(first.value, /^sha256:[0-9a-f]{64}$/, 'busybox:local imported');
      const again = await timed(() => ensureBusyboxImage(engine));
      t.equal(again.value, first.value, 'second call reuses the image');
      t.comment(`${version}: ensureBusyboxImage ${first.ms} ms, again ${again.ms} ms`);

      const runs: number[] = [];
      for (let i = 0; i < 3; i++) runs.push((await timed(() => engine.docker('run', '--rm', '--net', 'none', 'busybox:local', 'true'))).ms);
      t.comment(`${version}: docker run --rm --net none busybox:local true: ${runs.join(', ')} ms (median ${median(runs)})`);
      const links = await engine.docker('run', '--rm', '--net', 'none', 'busybox:local', 'ls', '/sys/class/net');
      t.same(links.stdout.split(/\s+/).filter(Boolean), ['lo'], '--net none gives the container only lo');

      const failed = await engine.docker('run', '--rm', '--net', 'none', 'busybox:local', 'false').catch((e: unknown) => e);
      t.match(failed, { stderr: String }, 'a failing command rejects with the CLI stderr attached');

      await stopAndCheckGone(t, engine);
      await engine.stop();
      t.pass('stop is idempotent');
    });

    t.test('private plugin dir: a spec-file plugin gets CreateNetwork and DeleteNetwork', async (t) => {
      const { pluginDir, plugin } = await probeSetup(t);
      const { value: engine, ms } = await timed(() => startDockerEngine({ engine: version, pluginDir }));
      t.teardown(() => engine.stop());
      t.comment(`${version}: startDockerEngine with pluginDir ${ms} ms`);
      t.notOk(existsSync('/etc/docker/plugins/probe.spec'), 'the host /etc/docker/plugins does not see the spec file');

      await createAndRemoveProbeNetwork(t, engine, plugin, '10.250.0.0/24');

      // containerd shares the engine's mount namespace, so it sees the rootfs dockerd mounted.
      await ensureBusyboxImage(engine);
      await engine.docker('run', '--rm', '--net', 'none', 'busybox:local', 'true');
      t.pass('a container runs in the private mount namespace');

      await stopAndCheckGone(t, engine, [pluginDir]);
      t.ok(existsSync(path.join(pluginDir, 'probe.spec')), 'the caller’s plugin dir is left alone');
    });

    t.test('stop() after dockerd was SIGKILLed under a running container', async (t) => {
      const engine = await startDockerEngine({ engine: version });
      t.teardown(() => engine.stop());
      await ensureBusyboxImage(engine);
      const id = (await engine.docker('run', '-d', '--net', 'none', 'busybox:local', 'sleep', '600')).stdout.trim();
      const address = readFileSync(path.join(engine.dir, 'containerd/state/io.containerd.runtime.v2.task/moby', id, 'address'), 'utf8');
      const shimSocket = address.trim().replace(/^unix:\/\//, '');
      t.ok(existsSync(shimSocket), `the shim listens on ${shimSocket}`);
      t.ok(mountsMentioning(engine.dir).length > 0, 'dockerd mounted things under its dir');
      process.kill(engine.pid, 'SIGKILL');
      await stopAndCheckGone(t, engine);
      t.notOk(existsSync(shimSocket), 'the killed shim’s socket is removed');
    });

    t.test('bridge: a bridge of its own for --net bridge', async (t) => {
      const engine = await startDockerEngine({ engine: version, bridge: true });
      t.teardown(() => engine.stop());
      const bridge = engine.bridge;
      if (!bridge) throw new Error('no bridge reported');
      t.ok(bridge.name.length <= 15, `bridge ${bridge.name} on ${bridge.subnet}`);
      await ensureBusyboxImage(engine);
      const addr = await engine.docker('run', '--rm', '--net', 'bridge', 'busybox:local', 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0');
      t.match(addr.stdout, bridge.subnet.replace(/0\/24$/, ''), 'the container gets an address on that bridge');
      await engine.docker('run', '--rm', '--net', 'bridge', 'busybox:local', 'ping', '-c', '1', '-W', '2', bridge.gateway);
      t.pass('the container reaches the bridge address');
      await stopAndCheckGone(t, engine);
    });
  });
}

const usable = ENGINES.filter((e) => availability.get(e)?.ok);

t.test('two engines side by side: own plugins of the same name, own bridges', { skip: usable.length === 0 ? 'no engine available' : false }, async (t) => {
  const versions = usable;
  const pair: EngineVersion[] = versions.length > 1 ? [...versions] : [versions[0]!, versions[0]!];
  const setups = await Promise.all(pair.map(() => probeSetup(t)));
  const engines = await Promise.all(pair.map((engine, i) => startDockerEngine({ engine, pluginDir: setups[i]!.pluginDir, bridge: true })));
  for (const e of engines) t.teardown(() => e.stop());
  t.not(engines[0]!.bridge?.name, engines[1]!.bridge?.name, 'different bridges');

  await Promise.all(engines.map((e, i) => createAndRemoveProbeNetwork(t, e, setups[i]!.plugin, `10.250.${i + 1}.0/24`)));
  await Promise.all(engines.map((e) => ensureBusyboxImage(e)));
  await Promise.all(engines.map((e) => e.docker('run', '--rm', '--net', 'bridge', 'busybox:local', 'ping', '-c', '1', '-W', '2', e.bridge!.gateway)));
  t.pass(`${pair.join(' and ')} both run --net bridge containers at once`);
  for (const e of engines) await stopAndCheckGone(t, e);
});
