/**
 * The NB database unreachable for 20 s while containers start and stop
 * (issue 10), twice: its ovsdb-server stopped (SIGSTOP: connections stay
 * open and nothing answers, so only keepalives and timeouts notice) and
 * killed (then started again on the same database file and socket).
 * Meanwhile the engine starts and removes containers on a network of
 * Docker's IPAM and one of the plugin's, and the test calls CreateEndpoint
 * on the plugin's socket itself: the engine waits for a legacy plugin
 * without a timeout, so the driver's own answer is what bounds a command.
 * Every failure must come within a bound and name what to check; the driver
 * stays up, and once NB is back, without a restart, new containers start
 * and reach the old ones, and no port, address or veth is left over.
 *
 * Real OVN (single chassis), Debian 12's engine, the driver as its own
 * process with a short --orphan-grace.
 */
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { copyFile, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { dockerAvailable, ensureBusyboxImage, startDockerEngine, type DockerEngine } from '../harness/docker.js';
import { startDriverProcess, type DriverProcess } from '../harness/driver-process.js';
import { linkExists } from '../harness/netns.js';
import { accounted, engineEndpoints, networkOf, strayReservations, switchPorts, type AccountedNetwork } from '../harness/network-accounting.js';
import { startOvnStack, type OvnStack } from '../harness/ovn-stack.js';
import { callPlugin, type PluginReply } from '../harness/plugin-client.js';
import { makePluginDirs, type PluginDirs } from '../harness/plugin-dirs.js';
import { isAlive, sleep, waitFor } from '../harness/process.js';
import { hostIfName } from '../../src/host/names.js';

const OUTAGE_MS = 20_000;
/**
 * How long the driver may take to answer a call that needs NB while NB is
 * unreachable: the NB client gives a transaction 10 s in all (long enough
 * for a RAFT leader change; its keepalive drops a silent connection within
 * 2 x 5 s), after which further ones fail within 2 s until NB answers
 * again; plus the CPU of a busy 2-core machine.
 */
const DRIVER_BOUND_MS = 15_000;
/** A failing docker command: one such answer, a few quick failures of the calls after it, and the engine's own work. */
const DOCKER_BOUND_MS = DRIVER_BOUND_MS + 15_000;
const PER_NETWORK = 2;
/**
 * On a pool, an endpoint whose DeleteEndpoint and ReleaseAddress both failed
 * during the outage is forgotten by the engine; the orphan sweep removes it
 * as the engine would (DeleteEndpoint, then ReleaseAddress), which the
 * check that every address of the pool is held for something covers.
 */

interface Outcome {
  what: string;
  ms: number;
  error?: string;
}

interface Outage {
  name: string;
  cut(stack: OvnStack): Promise<void>;
  restore(stack: OvnStack): Promise<void>;
}

const OUTAGES: Outage[] = [
  { name: 'hung (SIGSTOP)', cut: (s) => s.nb.kill('SIGSTOP'), restore: (s) => s.nb.kill('SIGCONT') },
  { name: 'down (killed, started again)', cut: (s) => s.nb.kill('SIGKILL'), restore: (s) => s.nb.start() },
];

/** Polls `look` until it finds nothing, for at most `timeoutMs`; returns what it last found. */
async function settle<T>(look: () => Promise<T[]>, what: string, timeoutMs: number): Promise<T[]> {
  return waitFor(async () => {
    const found = await look();
    return found.length === 0 ? found : undefined;
  }, { timeoutMs, intervalMs: 500, what }).catch(() => look());
}

/** Ports and endpoints the driver's log names: those made while NB was away are known to no one else. */
async function loggedPorts(logFile: string): Promise<string[]> {
  const text = await readFile(logFile, 'utf8');
  return [...new Set([...text.matchAll(/"(?:port|endpointId)":"([0-9a-f]{64})"/g)].map((m) => m[1]!))];
}

function within<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)));
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}

interface LogLine {
  time?: number;
  msg?: string;
  missing?: number;
}

/** Two orphan sweeps that began after `since` and found no endpoint of this host missing from the engine. */
async function sweptClean(logFile: string, since: number): Promise<void> {
  await waitFor(async () => {
    const lines = (await readFile(logFile, 'utf8')).split('\n').flatMap((l): LogLine[] => {
      try {
        return [JSON.parse(l) as LogLine];
      } catch {
        return [];
      }
    });
    // The first sweep to end after `since` may have begun before it.
    const sweeps = lines.filter((l) => (l.time ?? 0) > since && l.msg === 'orphan sweep done').slice(1);
    return sweeps.filter((l) => l.missing === 0).length >= 2 || undefined;
  }, { timeoutMs: 60_000, intervalMs: 500, what: 'two orphan sweeps with nothing missing' });
}

async function timed(what: string, work: () => Promise<unknown>): Promise<Outcome> {
  const started = Date.now();
  try {
    await work();
    return { what, ms: Date.now() - started };
  } catch (err) {
    return { what, ms: Date.now() - started, error: (err as Error).message };
  }
}

/** What the test starts; tearDown stops whatever of it did start. */
interface Lab {
  sfx: string;
  stack?: OvnStack;
  dirs?: PluginDirs;
  engine?: DockerEngine;
  driver?: DriverProcess;
  logFile?: string;
}

async function tearDown(t: Test, lab: Lab): Promise<void> {
  // The driver's log explains a failure; it would go with the plugin dirs.
  if (lab.logFile && !t.passing()) {
    const kept = path.join(os.tmpdir(), `nb-outage-${lab.sfx}.log`);
    await copyFile(lab.logFile, kept).then(() => t.comment(`driver log kept at ${kept}`), () => undefined);
  }
  // Whatever failed, NB answers again: the engine's teardown goes through the driver.
  await lab.stack?.nb.kill('SIGCONT').catch(() => undefined);
  const docker = (...args: string[]) => lab.engine?.docker(...args).then((r) => r.stdout.split(/\s+/).filter(Boolean), () => []);
  const containers = (await docker('ps', '-aq')) ?? [];
  if (containers.length > 0) await docker('rm', '-f', ...containers);
  for (const net of ['d', 'p']) await docker('network', 'rm', `${net}-${lab.sfx}`);
  for (const stop of [() => lab.engine?.stop(), () => lab.driver?.stop(), () => lab.stack?.stop(), () => lab.dirs?.remove()]) await stop();
}

t.test('NB unreachable for 20 s while containers start and stop', async (t) => {
  if (!(await dockerAvailable('20.10'))) return void t.fail('engine 20.10 cannot be started on this machine');
  const lab: Lab = { sfx: randomBytes(3).toString('hex') };
  t.teardown(() => tearDown(t, lab));
  const { sfx } = lab;
  const name = `ovn${sfx}`;
  const stack = (lab.stack = await startOvnStack());
  const dirs = (lab.dirs = await makePluginDirs(name));
  const engine = (lab.engine = await startDockerEngine({ engine: '20.10', pluginDir: dirs.pluginDir }));
  const logFile = (lab.logFile = path.join(dirs.dir, 'driver.log'));
  // The engine's API for the orphan sweeper, a short grace, and warm ports' names in the log (the veth check reads them).
  const flags = ['--docker-host', engine.host, '--masquerade', 'false', '--orphan-grace', '3000', '--log-level', 'debug'];
  const driver = (lab.driver = await startDriverProcess({ name, logFile, pluginDir: dirs.socketDir, nbRemote: stack.nbRemote, ovsDb: stack.ovsRemote, extraArgs: flags }));
  const driverPid = driver.pid;
  const image = await ensureBusyboxImage(engine);
  const docker = (...args: string[]) => engine.docker(...args).then((r) => r.stdout.trim());
  const nbctl = (...args: string[]) => stack.nbctl(...args);

  // A network of Docker's IPAM and one of the plugin's (its switch and warm ports are the pool's).
  const nets = new Map<string, AccountedNetwork>([
    [`d-${sfx}`, networkOf(await docker('network', 'create', '-d', name, '--subnet', '10.73.0.0/24', `d-${sfx}`))],
    [`p-${sfx}`, networkOf(await docker('network', 'create', '-d', name, '--ipam-driver', name, '--subnet', '10.74.0.0/24', `p-${sfx}`), 'docker_pool_10.74.0.0_24')],
  ]);
  const dNet = nets.get(`d-${sfx}`)!;
  const ipOf = (container: string, net: string) => docker('inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").IPAddress}}`, container);
  const endpointOf = (container: string, net: string) => docker('inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").EndpointID}}`, container);
  const runOn = (net: string, container: string) => docker('run', '-d', '--net', net, '--name', container, image, 'sleep', '3600');

  // Containers that run through both outages, and every port name any of ours ever had (for the veth check).
  for (const net of nets.keys()) for (let i = 0; i < PER_NETWORK; i++) await runOn(net, `old${i}-${net}`);
  const seenPorts = new Set<string>();
  const notePorts = async () => {
    for (const net of nets.values()) for (const p of await switchPorts(nbctl, net)) seenPorts.add(p);
  };
  await notePorts();

  for (const [round, outage] of OUTAGES.entries()) {
    await t.test(`NB ${outage.name}`, async (t) => {
      const victims = [...nets.keys()].flatMap((net) => Array.from({ length: PER_NETWORK }, (_, i) => ({ net, container: `v${round}${i}-${net}` })));
      for (const v of victims) await runOn(v.net, v.container);
      for (const v of victims) seenPorts.add(await endpointOf(v.container, v.net));
      await notePorts();

      // A request the engine would send, on a network the driver knows, at an address no port has.
      const probeEndpoint = randomBytes(32).toString('hex');
      seenPorts.add(probeEndpoint);
      const cutAt = Date.now();
      await outage.cut(stack);
      const direct = (async () => {
        const started = Date.now();
        const reply: PluginReply = await callPlugin(driver.socket, 'NetworkDriver.CreateEndpoint', {
          NetworkID: dNet.networkId,
          EndpointID: probeEndpoint,
          Interface: { Address: `10.73.0.${200 + round}/24`, AddressIPv6: '', MacAddress: '' },
          Options: {},
        });
        return { reply, ms: Date.now() - started };
      })();
      const ops = [
        ...[...nets.keys()].flatMap((net) => Array.from({ length: PER_NETWORK }, (_, i) => timed(`run s${round}${i}-${net}`, () => runOn(net, `s${round}${i}-${net}`)))),
        ...victims.map((v) => timed(`rm -f ${v.container}`, () => docker('rm', '-f', v.container))),
      ];
      // The outage itself lasts a fixed time; nothing is asserted at its end.
      await sleep(OUTAGE_MS - (Date.now() - cutAt));
      await outage.restore(stack);
      const restoredAt = Date.now();

      const { reply, ms } = await within(direct, 60_000, 'the direct CreateEndpoint');
      t.comment(`direct CreateEndpoint: ${reply.status} after ${ms} ms: ${JSON.stringify(reply.body)}`);
      t.equal(reply.status, 503, 'CreateEndpoint during the outage is refused as a failure of OVN');
      t.ok(ms <= DRIVER_BOUND_MS, `the driver answered within ${DRIVER_BOUND_MS} ms (${ms} ms)`);
      const err = String(reply.body.Err ?? '');
      t.match(err, stack.nbRemote, 'the error names the NB remote');
      t.match(err, /Northbound/, 'and the NB database');
      t.match(err, /check/i, 'and says what to check');

      const outcomes = await Promise.all(ops);
      for (const o of outcomes) t.comment(`${o.what}: ${o.ms} ms${o.error ? `: ${o.error.replace(/\s+/g, ' ')}` : ' (ok)'}`);
      for (const o of outcomes.filter((o) => o.error)) {
        t.ok(o.ms <= DOCKER_BOUND_MS, `${o.what} failed within ${DOCKER_BOUND_MS} ms (${o.ms} ms)`);
      }
      t.ok(isAlive(driverPid) && driver.pid === driverPid, 'the driver process stayed up');

      // Recovery: new containers start, with no restart of anything, and reach the old ones.
      for (const net of nets.keys()) {
        const fresh = `n${round}-${net}`;
        let attempts = 0;
        // A start in the moment before the driver is back in sync may fail (quickly): the next one must not.
        await waitFor(async () => {
          attempts++;
          return runOn(net, fresh).then(
            () => true,
            async (err: unknown) => {
              await docker('rm', '-f', fresh).catch(() => undefined);
              throw err;
            },
          );
        }, { timeoutMs: 30_000, intervalMs: 200, what: `a new container on ${net}` });
        t.comment(`${fresh} started ${Date.now() - restoredAt} ms after NB came back (attempts: ${attempts})`);
        t.match(await docker('exec', fresh, 'ping', '-c1', '-W2', await ipOf(`old0-${net}`, net)), /1 packets received/, `a new container on ${net} reaches an old one`);
        t.match(await docker('exec', `old1-${net}`, 'ping', '-c1', '-W2', await ipOf(`old0-${net}`, net)), /1 packets received/, `old ones on ${net} still reach each other`);
      }
      await notePorts();

      // Nothing left over, once the orphan sweeper has looked twice with NB in sync (new containers started) and found no endpoint missing from the engine.
      await sweptClean(logFile, Date.now());
      const dUnaccounted = await settle(async () => (await accounted(nbctl, docker, dNet)).unaccounted, 'every port of the network of Docker\'s IPAM to be accounted for', 30_000);
      t.same(dUnaccounted, [], 'Docker\'s IPAM: every port is a running container\'s or a warm one');
      const pool = nets.get(`p-${sfx}`)!;
      const poolLeft = await settle(
        async () => [...(await accounted(nbctl, docker, pool)).unaccounted.map((p) => `port ${p}`), ...(await strayReservations(nbctl, docker, pool)).map((r) => `address ${r}`)],
        'every port and address of the pool to be accounted for',
        15_000,
      );
      t.same(poolLeft, [], 'the plugin\'s IPAM: every port is a running container\'s or a warm one, and every address of the pool is held for one (or the gateway)');
      for (const [label, net] of nets) t.same((await engineEndpoints(docker, net.networkId)).stale, [], `${label}: the engine keeps no endpoint without a container`);
      for (const p of await loggedPorts(logFile)) seenPorts.add(p);
      const leftVeths = await settle(async () => {
        const live = new Set<string>();
        for (const net of nets.values()) for (const p of await switchPorts(nbctl, net)) live.add(p);
        const left: string[] = [];
        for (const p of seenPorts) if (!live.has(p) && (await linkExists(hostIfName(p)))) left.push(p);
        return left;
      }, 'no veth of a removed port', 30_000);
      t.same(leftVeths, [], 'no veth of a removed port remains');
    });
  }
  t.ok(isAlive(driverPid), 'the driver ran through both outages without a restart');
});
