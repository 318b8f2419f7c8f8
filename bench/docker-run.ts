/**
 * bench/docker-run: `docker run --rm --net <ovn network> busybox true`
 * against `--net bridge` (Docker's built-in driver) and against a no-op
 * remote plugin's `--internal` network (bench/noop-plugin.ts: the engine's
 * own cost of any remote network plugin), in rounds of three in one run, at
 * 0 and at 10,000 existing ports in NB; and the driver's own CreateEndpoint
 * + Join latency (Join includes the wait for OVN to report the port up).
 *
 * Real parts: single-chassis OVN (userspace datapath), the driver as its
 * own process, Debian's dockerd. Prints a Markdown table for the README.
 *
 *   npm run bench:docker-run [-- --pairs 20 --ports 10000 --engine 20.10]
 */
import { randomBytes } from 'node:crypto';
import { OvsdbClient } from '../src/ovsdb/index.js';
import type { DockerEngine } from '../test/harness/docker.js';
import type { OvnStack } from '../test/harness/ovn-stack.js';
import { callPlugin } from '../test/harness/plugin-client.js';
import { waitFor } from '../test/harness/process.js';
import { fillNb, startSingleChassisLab } from './lab.js';
import { median, time } from './stats.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}
const PAIRS = Number(arg('pairs', '20'));
const PORTS = Number(arg('ports', '10000'));
/** Idle time between two `docker run`s; 0 runs them back to back, so background work competes with the next start. */
const GAP_MS = Number(arg('gap', '0'));
const ENGINE = arg('engine', '20.10') as '20.10' | '26.1';
const CALLS = Number(arg('calls', '30'));


interface Result {
  ports: number;
  /** Median per network kind, and medians of per-round ratios to bridge and to the no-op plugin. */
  medians: Map<string, number>;
  ratios: Map<string, number>;
  toNoop: Map<string, number>;
  createEndpoint: number;
  join: number;
  /** RequestAddress + CreateEndpoint + Join on a network of our IPAM, on a warm port. */
  warmStart: number;
}

/**
 * The networks compared, in table order: the label, and `docker network
 * create` flags (IPAM is the plugin's own name, filled in below). Networks
 * on the driver's IPAM start containers on warm ports.
 */
const IPAM = '<ipam>';
const KINDS: [label: string, flags: string[]][] = [
  ['default (this host as gateway)', []],
  ['`-o ovn.gateway=docker`', ['-o', 'ovn.gateway=docker']],
  ['`--internal`', ['--internal']],
  ['our IPAM', ['--ipam-driver', IPAM]],
  ['our IPAM, `-o ovn.gateway=docker`', ['--ipam-driver', IPAM, '-o', 'ovn.gateway=docker']],
  ['our IPAM, `--internal`', ['--ipam-driver', IPAM, '--internal']],
];

async function main(): Promise<void> {
  const sfx = randomBytes(3).toString('hex');
  const lab = await startSingleChassisLab({ engine: ENGINE, name: `ovnb${sfx}`, bridge: true, noop: true });
  const { stack, engine, driver, image, name } = lab;
  const noop = lab.noop!;
  let nb: OvsdbClient | undefined;
  const results: Result[] = [];
  try {
    const nets = new Map<string, string>();
    let netId = '';
    let ipamNetId = '';
    for (const [i, [label, flags]] of KINDS.entries()) {
      const net = `bench-${i}-${sfx}`;
      const args = flags.map((f) => (f === IPAM ? name : f));
      const id = (await engine.docker('network', 'create', '-d', name, ...args, '--subnet', `10.${90 + i}.0.0/16`, net)).stdout.trim();
      if (i === 0) netId = id;
      if (i === 3) ipamNetId = id;
      nets.set(label, net);
    }
    const noopNet = `bench-noop-${sfx}`;
    await engine.docker('network', 'create', '-d', noop.name, '--internal', '--subnet', '10.89.0.0/16', noopNet);
    nb = await OvsdbClient.connect({ remote: stack.nbRemote, database: 'OVN_Northbound', tables: ['Logical_Switch'] });

    const dockerRun = (network: string) => () => engine!.docker('run', '--rm', '--net', network, image, 'true');
    for (const size of PORTS > 0 ? [0, PORTS] : [0]) {
      if (size > 0) await fillNb(nb, size);
      await settle(stack, 2 * KINDS.length);
      // Each network is paired with its own bridge runs, in a phase of its own: the background work one
      // network's containers cause (ovn-northd recomputing, veths going) then slows only its own pairs.
      const medians = new Map<string, number>();
      const ratios = new Map<string, number>();
      const toNoop = new Map<string, number>();
      const bridgeAll: number[] = [];
      const noopAll: number[] = [];
      for (const [label, net] of nets) {
        for (let i = 0; i < 2; i++) for (const n of [net, 'bridge', noopNet]) await dockerRun(n)();
        const runs = new Map<string, number[]>([[net, []], ['bridge', []], [noopNet, []]]);
        const order = [net, 'bridge', noopNet];
        for (let i = 0; i < PAIRS; i++) {
          // Rotate which goes first, so that none always runs on a warmer machine.
          for (const n of [...order.slice(i % 3), ...order.slice(0, i % 3)]) {
            if (GAP_MS > 0) await sleep(GAP_MS);
            runs.get(n)!.push(await time(dockerRun(n)));
          }
        }
        const [own, bridge, floor] = [runs.get(net)!, runs.get('bridge')!, runs.get(noopNet)!];
        bridgeAll.push(...bridge);
        noopAll.push(...floor);
        medians.set(label, median(own));
        ratios.set(label, median(own.map((o, i) => o / bridge[i]!)));
        toNoop.set(label, median(own.map((o, i) => o / floor[i]!)));
      }
      medians.set('bridge', median(bridgeAll));
      medians.set('noop', median(noopAll));
      ratios.set('noop', median(noopAll.map((o, i) => o / bridgeAll[i]!)));
      const { create, join } = await pluginLatency(driver.socket, netId, CALLS, size);
      const warmStart = await warmLatency(engine, driver.socket, ipamNetId, CALLS);
      results.push({ ports: size, medians, ratios, toNoop, createEndpoint: create, join, warmStart });
      console.error(`done at ${size} ports`);
    }
    await engine.docker('network', 'rm', ...nets.values(), noopNet);
  } finally {
    await nb?.close();
    await lab.stop();
  }

  // One row per network kind, one column pair per NB size: the table stays narrow enough to read.
  console.log(`| network | ${results.map((r) => `${r.ports} ports: median | to bridge | to no-op`).join(' | ')} |`);
  console.log(`|---|${results.map(() => '---:|---:|---:').join('|')}|`);
  console.log(`| \`--net bridge\` | ${results.map((r) => `${r.medians.get('bridge')!.toFixed(0)} ms | 1.00x | `).join(' | ')} |`);
  console.log(`| no-op plugin, \`--internal\` | ${results.map((r) => `${r.medians.get('noop')!.toFixed(0)} ms | ${r.ratios.get('noop')!.toFixed(2)}x | 1.00x`).join(' | ')} |`);
  for (const [label] of KINDS) {
    console.log(`| ${label} | ${results.map((r) => `${r.medians.get(label)!.toFixed(0)} ms | ${r.ratios.get(label)!.toFixed(2)}x | ${r.toNoop.get(label)!.toFixed(2)}x`).join(' | ')} |`);
  }
  console.log('\nThe driver\'s own handling (median of the calls as dockerd makes them):\n');
  console.log(`| ports in NB | CreateEndpoint | Join incl. port ready | warm port: RequestAddress + CreateEndpoint + Join |`);
  console.log('|---:|---:|---:|---:|');
  for (const r of results) {
    console.log(`| ${r.ports} | ${r.createEndpoint.toFixed(1)} ms | ${r.join.toFixed(1)} ms | ${r.warmStart.toFixed(1)} ms |`);
  }
  console.log(`\n${PAIRS} pairs per size, engine ${ENGINE}, node ${process.version}, ${GAP_MS} ms between runs.`);
}


/**
 * Before a size's phases: every network's warm ports made and plugged, and
 * OVN caught up with the NB (the 10,000 ports just added), so that the first
 * phase does not pay for the setup of all of them.
 */
async function settle(stack: OvnStack, warmPorts: number): Promise<void> {
  const ready = async () => {
    const rows = await stack.nbctl('--format=csv', '--data=bare', '--no-headings', '--columns=up,external_ids', 'list', 'Logical_Switch_Port');
    return rows.split('\n').filter((r) => r.startsWith('true,') && r.includes('docker:warm=')).length;
  };
  await waitFor(async () => ((await ready()) >= warmPorts ? true : undefined), { timeoutMs: 60_000, what: `${warmPorts} warm ports up` });
  await stack.nbctl('--wait=hv', 'sync');
}

/** The driver's own CreateEndpoint and Join (incl. waiting for the port to be up), called as dockerd does. */
async function pluginLatency(socket: string, networkId: string, calls: number, size: number) {
  const create: number[] = [];
  const join: number[] = [];
  for (let i = 0; i < calls; i++) {
    const endpointId = randomBytes(32).toString('hex');
    const address = `10.90.${200 + (size ? 1 : 0)}.${10 + i}/16`;
    create.push(
      await time(async () => {
        const r = await callPlugin(socket, 'NetworkDriver.CreateEndpoint', {
          NetworkID: networkId,
          EndpointID: endpointId,
          Interface: { Address: address, AddressIPv6: '', MacAddress: '' },
          Options: {},
        });
        if (r.status !== 200) throw new Error(JSON.stringify(r.body));
      }),
    );
    join.push(
      await time(async () => {
        const r = await callPlugin(socket, 'NetworkDriver.Join', { NetworkID: networkId, EndpointID: endpointId, SandboxKey: '', Options: {} });
        if (r.status !== 200) throw new Error(JSON.stringify(r.body));
      }),
    );
    await callPlugin(socket, 'NetworkDriver.Leave', { NetworkID: networkId, EndpointID: endpointId });
    await callPlugin(socket, 'NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: endpointId });
  }
  return { create: median(create), join: median(join) };
}

/**
 * A container start on a warm port, as the driver sees it: RequestAddress,
 * CreateEndpoint and Join (which then has nothing to wait for). Between
 * calls the pool gets time to refill, as it has between real starts.
 */
async function warmLatency(engine: DockerEngine, socket: string, networkId: string, calls: number): Promise<number> {
  const inspect = JSON.parse((await engine.docker('network', 'inspect', networkId)).stdout) as [{ IPAM: { Config: { Subnet: string }[] } }];
  const subnet = inspect[0].IPAM.Config[0]!.Subnet;
  const pool = await callPlugin(socket, 'IpamDriver.RequestPool', { AddressSpace: 'ovn', Pool: subnet, SubPool: '', Options: {}, V6: false });
  const poolId = String(pool.body.PoolID);
  const ok = (r: { status: number; body: Record<string, unknown> }) => {
    if (r.status !== 200) throw new Error(JSON.stringify(r.body));
    return r.body;
  };
  const samples: number[] = [];
  for (let i = 0; i < calls; i++) {
    await sleep(1500);
    const endpointId = randomBytes(32).toString('hex');
    let address = '';
    samples.push(
      await time(async () => {
        address = String(ok(await callPlugin(socket, 'IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: {} })).Address);
        ok(await callPlugin(socket, 'NetworkDriver.CreateEndpoint', {
          NetworkID: networkId,
          EndpointID: endpointId,
          Interface: { Address: address, AddressIPv6: '', MacAddress: '' },
          Options: {},
        }));
        ok(await callPlugin(socket, 'NetworkDriver.Join', { NetworkID: networkId, EndpointID: endpointId, SandboxKey: '', Options: {} }));
      }),
    );
    await callPlugin(socket, 'NetworkDriver.Leave', { NetworkID: networkId, EndpointID: endpointId });
    await callPlugin(socket, 'NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: endpointId });
    await callPlugin(socket, 'IpamDriver.ReleaseAddress', { PoolID: poolId, Address: address.split('/')[0] });
  }
  await callPlugin(socket, 'IpamDriver.ReleasePool', { PoolID: poolId });
  return median(samples);
}


function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
