/**
 * The names publisher when NB does not answer: the engine's event stream
 * reopens (the driver then publishes every running container's names, as
 * events were missed) while the NB ovsdb-server is hung (SIGSTOP: its
 * connection stays open, so only the client's timeout ends the write). The
 * write fails; the driver must log it, stay up and publish the missed names
 * once NB is back.
 *
 * Real OVN (single chassis), a real engine (20.10), the driver as its own
 * process. The driver reads the engine's API through a unix-socket relay of
 * this test, which can drop the event stream and refuse it for a while:
 * containers started meanwhile connect without the driver seeing the event.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { dockerAvailable, ensureBusyboxImage, startDockerEngine, type DockerEngine } from '../harness/docker.js';
import { LEVEL, readDriverLog, type LogEntry } from '../harness/driver-log.js';
import { startDriverProcess, type DriverProcess } from '../harness/driver-process.js';
import { startOvnStack, type OvnStack } from '../harness/ovn-stack.js';
import { recordedNames } from '../harness/dns-names.js';
import { makePluginDirs, type PluginDirs } from '../harness/plugin-dirs.js';
import { isAlive, waitFor } from '../harness/process.js';

type Relay = Awaited<ReturnType<typeof startRelay>>;

/** Relays connections to the engine's socket; refuse() drops the open ones and turns new ones away until accept(). */
async function startRelay(listenPath: string, enginePath: string) {
  const open = new Set<net.Socket>();
  let refusing = false;
  const server = net.createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    const engine = net.connect(enginePath);
    const pair = [client, engine];
    for (const s of pair) {
      open.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        for (const o of pair) {
          o.destroy();
          open.delete(o);
        }
      });
    }
    client.pipe(engine);
    engine.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(listenPath, resolve));
  return {
    refuse() {
      refusing = true;
      for (const s of open) s.destroy();
    },
    accept() {
      refusing = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}

t.test('NB hung while the event stream reopens: the driver stays up and publishes the missed names once NB is back', async (t) => {
  if (!(await dockerAvailable('20.10'))) return void t.fail('engine 20.10 cannot be started on this machine');
  const name = `ovn${randomBytes(3).toString('hex')}`;
  const [a, b, c, network] = ['a', 'b', 'c', 'n'].map((x) => `${name}-${x}`) as [string, string, string, string];
  // What has started: the teardown stops whatever did.
  const up: { dirs?: PluginDirs; stack?: OvnStack; engine?: DockerEngine; relay?: Relay; driver?: DriverProcess } = {};
  t.teardown(async () => {
    // NB answers again: the engine's teardown goes through the driver.
    await up.stack?.nb.kill('SIGCONT');
    if (up.engine) {
      await up.engine.docker('rm', '-f', a, b, c).catch(() => undefined);
      await up.engine.docker('network', 'rm', network).catch(() => undefined);
      await up.engine.stop();
    }
    await up.driver?.stop();
    await up.relay?.close();
    await up.stack?.stop();
    await up.dirs?.remove();
  });

  const dirs = (up.dirs = await makePluginDirs(name));
  const stack = (up.stack = await startOvnStack());
  const engine = (up.engine = await startDockerEngine({ engine: '20.10', pluginDir: dirs.pluginDir }));
  const relayPath = path.join(dirs.dir, 'engine-relay.sock');
  const relay = (up.relay = await startRelay(relayPath, engine.host.replace(/^unix:\/\//, '')));
  const logFile = path.join(dirs.dir, 'driver.log');
  const driver = (up.driver = await startDriverProcess({
    name,
    pluginDir: dirs.socketDir,
    nbRemote: stack.nbRemote,
    ovsDb: stack.ovsRemote,
    logFile,
    extraArgs: ['--docker-host', `unix://${relayPath}`, '--masquerade', 'false', '--warm-ports', '0'],
  }));
  const image = await ensureBusyboxImage(engine);
  const docker = (...args: string[]) => engine.docker(...args).then((r) => r.stdout.trim());
  // Names reach NB on a switch that spans hosts, recorded on the ports (the DNS row comes from them): that is where publishing shows.
  const recorded = () => recordedNames(stack);
  const published = (container: string, timeoutMs: number) =>
    waitFor(async () => (await recorded()).includes(container) || undefined, { timeoutMs, what: `${container}'s name recorded in OVN` });
  /** Log entries from index `from` on, once `match` holds for one of them. */
  const logged = (from: number, what: string, match: (e: LogEntry) => boolean, timeoutMs: number) =>
    waitFor(
      async () => {
        const entries = (await readDriverLog(logFile)).slice(from);
        if (entries.some(match)) return entries;
        // An exit is an outcome too: fail now rather than at the timeout.
        return isAlive(driver.pid) ? undefined : entries;
      },
      { timeoutMs, what },
    );
  const logLength = async () => (await readDriverLog(logFile)).length;

  const networkId = await docker('network', 'create', '-d', name, '--subnet', '10.87.0.0/24', network);
  // A port of another host on the switch (its rows as that host's driver writes them): the switch spans hosts.
  const otherPort = `${name}-other`;
  await stack.nbctl('lsp-add', networkId, otherPort, '--', 'set', 'Logical_Switch_Port', otherPort,
    'external_ids:docker\\:owner=ovn-docker-driver', 'external_ids:docker\\:chassis=other-host', `external_ids:docker\\:switch=${networkId}`,
    'external_ids:docker\\:ipv4="10.87.0.200/24"', 'addresses="0a:58:0a:57:00:c8 10.87.0.200"');
  await docker('run', '-d', '--net', network, '--name', a, image, 'sleep', '3600');
  await published(a, 20_000);
  t.pass('names are published while NB answers');

  // The stream drops and stays away: b connects without the driver hearing of it.
  let mark = await logLength();
  relay.refuse();
  await logged(mark, 'the driver to lose the event stream', (e) => /cannot follow the Docker engine events/.test(e.msg ?? ''), 15_000);
  await docker('run', '-d', '--net', network, '--name', b, image, 'sleep', '3600');
  t.notOk((await recorded()).includes(b), 'b is not published: its connect event was missed');

  // NB hangs; the stream comes back, and the driver's sync of the running containers meets the hung NB.
  await stack.nb.kill('SIGSTOP');
  mark = await logLength();
  relay.accept();
  const failure = (e: LogEntry) => e.level === LEVEL.warn && /cannot publish the names of the running containers/.test(e.msg ?? '');
  // The NB client gives up on the write at its timeout.
  const after = await logged(mark, 'the failed sync to be logged', failure, 60_000);
  t.ok(after.some((e) => /Docker engine API reachable again/.test(e.msg ?? '')), 'the stream reopened');
  t.ok(isAlive(driver.pid), 'the driver is still running after the NB write failed');
  t.ok(after.some(failure), 'and logged the failure as a warning');

  // NB comes back as a new process: the transaction sent to the hung one never commits, so only a retry publishes b.
  await stack.nb.kill('SIGKILL');
  await stack.nb.start();
  await published(b, 60_000);
  t.pass('the missed name is published once NB is back');
  await docker('run', '-d', '--net', network, '--name', c, image, 'sleep', '3600');
  await published(c, 20_000);
  t.pass('and the driver serves new containers, publishing their names');
  t.ok(isAlive(driver.pid), 'still running');
});
