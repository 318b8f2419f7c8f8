/**
 * bench/scale: the driver against a large NB. Ports are added to NB in
 * steps, 0, 10,000 and 50,000 by default, of one of two kinds (--fill;
 * `both`, the default, runs each on a lab of its own and reports a row per
 * kind and step):
 *   - tenant: other tenants' ports (no keys of ours, on a switch of their own);
 *   - driver: the driver's own rows on other hosts: switches of 250 ports
 *     each, every one a network of one of 20 remote chassis, written as the
 *     driver writes them (src/ovn/records.ts) plus `docker:switch`.
 * At each step a fresh driver process starts on the single-chassis lab and
 * we measure:
 *   - its start-up: spawn to the plugin socket answering (NB replica loaded,
 *     warm ports recovered), and its resident memory then and after the
 *     endpoints below;
 *   - CreateEndpoint + Join and Leave + DeleteEndpoint, as `docker run --rm`
 *     calls them, one container at a time on a network of Docker's IPAM;
 *   - in this process, how long a replica of the driver's NB tables takes to
 *     load and how many rows it holds, scoped as the driver scopes it
 *     (src/ovn/keys.ts nbScope) and whole, side by side.
 *
 *   npm run bench:scale [-- --steps 0,10000,50000 --samples 20 --fill tenant|driver|both]
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { macFromIPv4 } from '../src/net/mac.js';
import { NB_TABLES, nbScope } from '../src/ovn/keys.js';
import { attachmentIds, endpointPortRow, networkExternalIds, type NetworkSpec } from '../src/ovn/records.js';
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
type Fill = 'tenant' | 'driver';
const FILL_ARG = arg('fill', 'both');
if (!['tenant', 'driver', 'both'].includes(FILL_ARG)) throw new Error(`--fill ${FILL_ARG}: tenant, driver or both`);
const FILLS: Fill[] = FILL_ARG === 'both' ? ['tenant', 'driver'] : [FILL_ARG as Fill];
const FILL_LABEL: Record<Fill, string> = { tenant: 'other tenants', driver: "driver's, other hosts" };

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

/** The driver's own rows on other hosts: ports per switch, and the remote chassis the switches' networks are spread over. */
const PER_SWITCH = 250;
const REMOTE_CHASSIS = 20;
const hex64 = (seed: string) => createHash('sha256').update(seed).digest('hex');

/** Remote switch k: a network of Docker's IPAM on chassis remote-host-<k mod 20>, 10.<100 + k/256>.<k mod 256>.0/24. */
function remoteNetwork(k: number): { name: string; spec: NetworkSpec; prefix: string } {
  if (k >= 130 * 256) throw new Error('bench/scale: too many remote switches for 10.100-229.x.0/24');
  const prefix = `10.${100 + (k >> 8)}.${k & 255}`;
  return {
    name: `scale-remote-${k}`,
    prefix,
    spec: {
      networkId: hex64(`scale-remote-network-${k}`),
      ipv4: [{ subnet: `${prefix}.0/24`, gateway: `${prefix}.1` }],
      ipv6: [],
      mtu: 1442,
      internal: false,
      options: {},
      chassis: `remote-host-${k % REMOTE_CHASSIS}`,
    },
  };
}

/**
 * The driver's own rows on other hosts, up to `total` ports, 1,000 per
 * transaction: port i is endpoint .(i mod 250 + 2) of remote switch i / 250,
 * which is created, as CreateNetwork creates it, with its first port.
 */
async function fillDriverTo(nb: OvsdbClient, total: number, have: number): Promise<void> {
  for (let done = have; done < total; done += 1000) {
    await nb.transaction((tx) => {
      const end = Math.min(total, done + 1000);
      for (let first = done; first < end; ) {
        const k = Math.floor(first / PER_SWITCH);
        const last = Math.min(end, (k + 1) * PER_SWITCH);
        const { name, spec, prefix } = remoteNetwork(k);
        const ports = [];
        for (let i = first; i < last; i++) {
          const ip = `${prefix}.${(i % PER_SWITCH) + 2}`;
          const row = endpointPortRow(
            { networkId: spec.networkId, endpointId: hex64(`scale-remote-endpoint-${i}`), ipv4: `${ip}/24`, ...(spec.chassis ? { chassis: spec.chassis } : {}) },
            name,
            macFromIPv4(ip),
          );
          ports.push(tx.insert('Logical_Switch_Port', row));
        }
        if (first === k * PER_SWITCH) {
          tx.insert('Logical_Switch', {
            name,
            external_ids: new Map([...networkExternalIds(spec), ...attachmentIds(spec)]),
            other_config: new Map([['mcast_snoop', 'false']]),
            ports,
          });
        } else {
          tx.mutate('Logical_Switch', [['name', '==', name]], [['ports', 'insert', ports]]);
        }
        first = last;
      }
    });
  }
}

async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN) / 1024;
}

/** A replica of the driver's tables: load time and rows held. */
async function replicaLoad(remote: string, scoped: boolean): Promise<{ ms: number; rows: number }> {
  const t0 = performance.now();
  const client = await OvsdbClient.connect({ remote, database: 'OVN_Northbound', tables: NB_TABLES, ...(scoped ? { where: nbScope('overlay', 'bench-chassis') } : {}) }, 120_000);
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
  fill: Fill;
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

async function measure(stack: OvnStack, dirs: PluginDirs, name: string, fill: Fill, ports: number): Promise<Step> {
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
    return { fill, ports, startMs, rssStart, rssAfter, firstStart, createJoin: median(createJoin), leaveDelete: median(leaveDelete), scoped, whole };
  } finally {
    await driver.stop();
  }
}

async function main(): Promise<void> {
  const steps: Step[] = [];
  try {
    for (const fill of FILLS) await runFill(fill, steps);
  } finally {
    console.log('| fill | ports in NB | driver start-up | RSS at start | RSS after | first CreateEndpoint + Join (cold) | CreateEndpoint + Join | Leave + DeleteEndpoint | replica as the driver scopes it | whole tables |');
    console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    const order = (s: Step) => STEPS.indexOf(s.ports) * FILLS.length + FILLS.indexOf(s.fill);
    for (const s of [...steps].sort((a, b) => order(a) - order(b))) console.log(row(s));
    console.log(`\nMedians of ${SAMPLES} containers per step after the first, one at a time; each fill on a lab of its own; node ${process.version}.`);
  }
}

/** One kind of fill, on a fresh lab: its steps, each measured as it is reached. */
async function runFill(fill: Fill, steps: Step[]): Promise<void> {
  const name = `ovnscale${randomBytes(3).toString('hex')}`;
  const stack = await startOvnStack();
  try {
    const dirs = await makePluginDirs(name);
    try {
      const nb = await OvsdbClient.connect({ remote: stack.nbRemote, database: 'OVN_Northbound', tables: ['Logical_Switch'] });
      try {
        let have = 0;
        for (const ports of STEPS) {
          await (fill === 'tenant' ? fillTo : fillDriverTo)(nb, ports, have);
          have = ports;
          // ovn-northd and ovn-controller catch up first (a full recompute of 50,000 ports takes a while): ovn-nbctl's own 20 s is too short.
          const synced = performance.now();
          await run('ovn-nbctl', [`--db=${stack.nbRemote}`, '--timeout=600', '--wait=hv', 'sync'], { timeoutMs: 610_000 });
          const step = await measure(stack, dirs, name, fill, ports);
          steps.push(step);
          console.error(`done: ${ports} ports, ${FILL_LABEL[fill]} (OVN caught up with them in ${((performance.now() - synced) / 1000).toFixed(0)} s)`);
          console.error(row(step));
        }
      } finally {
        await nb.close();
      }
    } finally {
      await dirs.remove();
    }
  } finally {
    await stack.stop();
  }
}

function row(s: Step): string {
  return (
    `| ${FILL_LABEL[s.fill]} | ${s.ports} | ${s.startMs.toFixed(0)} ms | ${s.rssStart.toFixed(0)} MiB | ${s.rssAfter.toFixed(0)} MiB | ${s.firstStart.toFixed(0)} ms | ${s.createJoin.toFixed(1)} ms | ${s.leaveDelete.toFixed(1)} ms | ` +
    `${s.scoped.rows} rows, ${s.scoped.ms.toFixed(0)} ms | ${s.whole.rows} rows, ${s.whole.ms.toFixed(0)} ms |`
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
