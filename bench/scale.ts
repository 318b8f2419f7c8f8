/**
 * bench/scale: the driver against a large NB. Other tenants' ports (no keys
 * of ours, on a switch of their own) are added to NB in steps, 0, 10,000
 * and 50,000 by default; at each step a fresh driver process starts on the
 * single-chassis lab and we measure:
 *   - its start-up: spawn to the plugin socket answering (NB replica loaded,
 *     warm ports recovered), and its resident memory then and after the
 *     endpoints below;
 *   - CreateEndpoint + Join and Leave + DeleteEndpoint, as `docker run --rm`
 *     calls them, one container at a time on a network of Docker's IPAM;
 *   - in this process, how long a replica of the driver's NB tables takes to
 *     load and how many rows it holds, scoped as the driver scopes it
 *     (src/ovn/keys.ts nbScope) and whole, side by side.
 *
 *   npm run bench:scale [-- --steps 0,10000,50000 --samples 20]
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { NB_TABLES, nbScope } from '../src/ovn/keys.js';
import { OvsdbClient } from '../src/ovsdb/index.js';
import { startDriverProcess, type DriverProcess } from '../test/harness/driver-process.js';
import { startOvnStack, type OvnStack } from '../test/harness/ovn-stack.js';
import { callPlugin } from '../test/harness/plugin-client.js';
import { makePluginDirs, type PluginDirs } from '../test/harness/plugin-dirs.js';
import { run } from '../test/harness/process.js';
import { median } from './stats.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}
const STEPS = arg('steps', '0,10000,50000').split(',').map(Number);
const SAMPLES = Number(arg('samples', '20'));

/** Other tenants' ports: added to one switch of theirs, 1,000 per transaction, up to `total`. */
async function fillTo(nb: OvsdbClient, total: number, have: number): Promise<void> {
  if (have === 0 && total > 0) await nb.transaction((tx) => void tx.insert('Logical_Switch', { name: 'tenant-fill' }));
  for (let done = have; done < total; done += 1000) {
    await nb.transaction((tx) => {
      const ports = [];
      for (let i = done; i < Math.min(total, done + 1000); i++) {
        ports.push(tx.insert('Logical_Switch_Port', { name: `tenant-${i}`, addresses: [`0a:00:${hexByte(i >> 16)}:${hexByte(i >> 8)}:${hexByte(i)}:01 172.16.${(i >> 8) & 255}.${i & 255}`] }));
      }
      tx.mutate('Logical_Switch', [['name', '==', 'tenant-fill']], [['ports', 'insert', ports]]);
    });
  }
}
const hexByte = (n: number) => (n & 255).toString(16).padStart(2, '0');

async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN) / 1024;
}

/** A replica of the driver's tables: load time and rows held. */
async function replicaLoad(remote: string, scoped: boolean): Promise<{ ms: number; rows: number }> {
  const t0 = performance.now();
  const client = await OvsdbClient.connect({ remote, database: 'OVN_Northbound', tables: NB_TABLES, ...(scoped ? { where: nbScope('overlay') } : {}) }, 120_000);
  const ms = performance.now() - t0;
  let rows = 0;
  for (const table of NB_TABLES) for (const _ of client.replica.rows(table)) rows++;
  await client.close();
  return { ms, rows };
}

async function call(driver: DriverProcess, method: string, body: unknown): Promise<Record<string, unknown>> {
  const reply = await callPlugin(driver.socket, method, body);
  if (reply.status !== 200 || (reply.body as { Err?: string }).Err) throw new Error(`${method}: ${JSON.stringify(reply.body)}`);
  return reply.body as Record<string, unknown>;
}

interface Step {
  ports: number;
  startMs: number;
  rssStart: number;
  rssAfter: number;
  /** The network's first CreateEndpoint + Join, before its warm ports are ready. */
  firstStart: number;
  createJoin: number;
  leaveDelete: number;
  scoped: { ms: number; rows: number };
  whole: { ms: number; rows: number };
}

async function measure(stack: OvnStack, dirs: PluginDirs, name: string, ports: number): Promise<Step> {
  const whole = await replicaLoad(stack.nbRemote, false);
  const scoped = await replicaLoad(stack.nbRemote, true);
  const t0 = performance.now();
  const driver = await startDriverProcess({
    name,
    pluginDir: dirs.socketDir,
    nbRemote: stack.nbRemote,
    ovsDb: stack.ovsRemote,
    logFile: path.join(dirs.dir, 'driver.log'),
    // The first start on a new network takes the cold path, which waits for ovn-northd (a full recompute of NB on
    // OVN < 23.09: longer than the default 15 s at 50,000 ports); it is reported on its own.
    extraArgs: ['--log-level', 'warn', '--masquerade', 'false', '--docker-host', 'none', '--port-up-timeout', '600000'],
  });
  const startMs = performance.now() - t0;
  try {
    await call(driver, 'Plugin.Activate', {});
    const rssStart = await rssMiB(driver.pid);
    const networkId = randomBytes(32).toString('hex');
    await call(driver, 'NetworkDriver.CreateNetwork', {
      NetworkID: networkId,
      Options: { 'com.docker.network.generic': { 'ovn.gateway': 'docker' } },
      IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.230.0.0/24', Gateway: '10.230.0.1/24' }],
      IPv6Data: [],
    });
    const createJoin: number[] = [];
    const leaveDelete: number[] = [];
    let firstStart = 0;
    for (let i = -1; i < SAMPLES; i++) {
      // As Docker's IPAM gives it to one container at a time: the lowest free address, .2 each time.
      const endpointId = randomBytes(32).toString('hex');
      const c0 = performance.now();
      await call(driver, 'NetworkDriver.CreateEndpoint', { NetworkID: networkId, EndpointID: endpointId, Interface: { Address: '10.230.0.2/24', AddressIPv6: '', MacAddress: '' }, Options: {} });
      await call(driver, 'NetworkDriver.Join', { NetworkID: networkId, EndpointID: endpointId, SandboxKey: '', Options: {} });
      const c1 = performance.now();
      await call(driver, 'NetworkDriver.Leave', { NetworkID: networkId, EndpointID: endpointId });
      await call(driver, 'NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: endpointId });
      if (i < 0) {
        firstStart = c1 - c0;
        continue;
      }
      createJoin.push(c1 - c0);
      leaveDelete.push(performance.now() - c1);
    }
    const rssAfter = await rssMiB(driver.pid);
    await call(driver, 'NetworkDriver.DeleteNetwork', { NetworkID: networkId });
    return { ports, startMs, rssStart, rssAfter, firstStart, createJoin: median(createJoin), leaveDelete: median(leaveDelete), scoped, whole };
  } finally {
    await driver.stop();
  }
}

async function main(): Promise<void> {
  const name = `ovnscale${randomBytes(3).toString('hex')}`;
  const stack = await startOvnStack();
  const dirs = await makePluginDirs(name);
  const nb = await OvsdbClient.connect({ remote: stack.nbRemote, database: 'OVN_Northbound', tables: ['Logical_Switch'] });
  const steps: Step[] = [];
  try {
    let have = 0;
    for (const ports of STEPS) {
      await fillTo(nb, ports, have);
      have = ports;
      // ovn-northd and ovn-controller catch up first (a full recompute of 50,000 ports takes a while): ovn-nbctl's own 20 s is too short.
      const synced = performance.now();
      await run('ovn-nbctl', [`--db=${stack.nbRemote}`, '--timeout=600', '--wait=hv', 'sync'], { timeoutMs: 610_000 });
      const step = await measure(stack, dirs, name, ports);
      steps.push(step);
      console.error(`done: ${ports} ports (OVN caught up with them in ${((performance.now() - synced) / 1000).toFixed(0)} s)`);
      console.error(row(step));
    }
  } finally {
    await nb.close();
    await dirs.remove();
    await stack.stop();
    console.log('| other ports in NB | driver start-up | RSS at start | RSS after | first CreateEndpoint + Join (cold) | CreateEndpoint + Join | Leave + DeleteEndpoint | replica as the driver scopes it | whole tables |');
    console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const s of steps) console.log(row(s));
    console.log(`\nMedians of ${SAMPLES} containers per step after the first, one at a time; node ${process.version}.`);
  }
}

function row(s: Step): string {
  return (
    `| ${s.ports} | ${s.startMs.toFixed(0)} ms | ${s.rssStart.toFixed(0)} MiB | ${s.rssAfter.toFixed(0)} MiB | ${s.firstStart.toFixed(0)} ms | ${s.createJoin.toFixed(1)} ms | ${s.leaveDelete.toFixed(1)} ms | ` +
    `${s.scoped.rows} rows, ${s.scoped.ms.toFixed(0)} ms | ${s.whole.rows} rows, ${s.whole.ms.toFixed(0)} ms |`
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
