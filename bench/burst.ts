/**
 * bench/burst: N containers started at once (`docker run -d`, as `docker
 * compose up` or a host rebooting with `--restart always` containers do) on
 * one network of ours, against the same burst on `--net bridge` and on a
 * no-op remote plugin's `--internal` network (bench/noop-plugin.ts, the
 * engine's own cost of a remote plugin), in rotating order within each
 * round, at 0 and at 10,000 ports in NB.
 *
 * Per burst: the time until every `docker run -d` has returned (all
 * running), and for ours until each container has pinged the first one (the
 * no-op plugin's containers have no connectivity, and bridge traffic in the
 * root namespace passes the machine's own FORWARD chain, which a bench does
 * not touch); the CPU time the driver, ovn-northd, ovn-controller and
 * dockerd used until all were running (the pings are `docker exec`s, which
 * would charge dockerd for ours only). Containers
 * are removed between bursts (not timed), and the next burst starts after
 * the driver's warm pool had time to refill.
 *
 * Real parts: single-chassis OVN (userspace datapath), the driver as its own
 * process with its defaults (2 warm ports per network), Debian's dockerd.
 *
 *   npm run bench:burst [-- --sizes 20,50 --rounds 2 --ports 10000 --engine 20.10 --settle 5000]
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { externalIds } from '../src/ovn/external-ids.js';
import { portSetName } from '../src/ovn/port-sets.js';
import { OvsdbClient } from '../src/ovsdb/index.js';
import type { DockerEngine } from '../test/harness/docker.js';
import { LEVEL, readDriverLog } from '../test/harness/driver-log.js';
import { ovnBinaries } from '../test/harness/ovn-binaries.js';
import { run, waitFor } from '../test/harness/process.js';
import { fillNb, startSingleChassisLab } from './lab.js';
import { median } from './stats.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}
const SIZES = arg('sizes', '20,50').split(',').map(Number);
const ROUNDS = Number(arg('rounds', '2'));
const PORTS = Number(arg('ports', '10000'));
const ENGINE = arg('engine', '20.10') as '20.10' | '26.1';
/** Pause after a burst's containers are removed: the warm pool refills, the engine settles. */
const SETTLE_MS = Number(arg('settle', '5000'));

type Kind = 'ours' | 'bridge' | 'noop';
const KINDS: Kind[] = ['ours', 'bridge', 'noop'];

interface Burst {
  started: number;
  /** Until every container pinged the first; ours only. */
  pinged?: number;
  /** CPU milliseconds until every container is running, by daemon. */
  cpu: { driver: number; northd: number; controller: number; dockerd: number };
  /** Ours only: how many started on a warm port (adopted, per the network's port set). */
  warm?: number;
}

async function main(): Promise<void> {
  const sfx = randomBytes(3).toString('hex');
  const lab = await startSingleChassisLab({ engine: ENGINE, name: `ovnb${sfx}`, bridge: true, noop: true });
  const { stack, engine, driver, image, name } = lab;
  let nb: OvsdbClient | undefined;
  const rows: string[] = [];
  try {
    const nets: Record<Kind, string> = { ours: `burst-${sfx}`, bridge: 'bridge', noop: `burst-noop-${sfx}` };
    await engine.docker('network', 'create', '-d', name, '--subnet', '10.120.0.0/16', nets.ours);
    await engine.docker('network', 'create', '-d', lab.noop!.name, '--internal', '--subnet', '10.121.0.0/16', nets.noop);
    nb = await OvsdbClient.connect({ remote: stack.nbRemote, database: 'OVN_Northbound', tables: ['Logical_Switch', 'Address_Set'] });
    const portSet = portSetName((await engine.docker('network', 'inspect', '-f', '{{.Id}}', nets.ours)).stdout.trim());
    const client = nb;
    /** Endpoints on warm ports right now: the port set holds their addresses as "ep <port> <endpoint> <network>". */
    const adopted = () => {
      const set = client.replica.findOne('Address_Set', 'name', portSet);
      return set ? [...externalIds(set).values()].filter((h) => h.startsWith('ep ')).length : 0;
    };
    const pids = { driver: driver.pid, northd: stack.pids.northd, controller: stack.pids.controller, dockerd: engine.pid };

    for (const ports of PORTS > 0 ? [0, PORTS] : [0]) {
      if (ports > 0) await fillNb(nb, ports);
      await stack.nbctl('--wait=hv', 'sync');
      for (const n of SIZES) {
        const bursts: Record<Kind, Burst[]> = { ours: [], bridge: [], noop: [] };
        // One burst of each first, not counted: images, caches and the pool's first refill.
        for (const kind of KINDS) await burst(engine, image, nets[kind], kind, n, pids, adopted);
        for (let r = 0; r < ROUNDS; r++) {
          for (const kind of [...KINDS.slice(r % 3), ...KINDS.slice(0, r % 3)]) bursts[kind].push(await burst(engine, image, nets[kind], kind, n, pids, adopted));
        }
        const m = (kind: Kind, f: (b: Burst) => number | undefined) => median(bursts[kind].map(f).filter((x): x is number => x !== undefined));
        const cpu = (kind: Kind, d: keyof Burst['cpu']) => m(kind, (b) => b.cpu[d]).toFixed(0);
        rows.push(
          `| ${ports} | ${n} | ${m('ours', (b) => b.started).toFixed(0)} ms | ${m('bridge', (b) => b.started).toFixed(0)} ms | ${m('noop', (b) => b.started).toFixed(0)} ms | ` +
            `**${(m('ours', (b) => b.started) / m('bridge', (b) => b.started)).toFixed(2)}x** | **${(m('ours', (b) => b.started) / m('noop', (b) => b.started)).toFixed(2)}x** | ` +
            `${m('ours', (b) => b.warm).toFixed(0)} | ${m('ours', (b) => b.pinged).toFixed(0)} ms | ${cpu('ours', 'driver')} / ${cpu('ours', 'northd')} / ${cpu('ours', 'controller')} / ${cpu('ours', 'dockerd')} ms | ${cpu('noop', 'dockerd')} ms |`,
        );
        console.error(`done: ${n} at once, ${ports} ports`);
      }
    }
    // The lab goes anyway; a network the engine will not remove (an endpoint a loaded engine lost track of) must not cost the figures.
    await engine.docker('network', 'rm', nets.ours, nets.noop).catch(async (err: unknown) => {
      console.error(`cannot remove the bench's networks: ${(err as Error).message}`);
      await reportLeftovers(engine, nets.ours, process.env.BENCH_DRIVER_LOG ?? path.join(lab.dirs.dir, 'driver.log'));
    });
  } finally {
    await nb?.close();
    await lab.stop();
    // Whatever was measured, also when a later step failed.
    console.log('| ports in NB | at once | ours: all running | bridge | no-op plugin | ours / bridge | ours / no-op | ours: on warm ports | ours: all pinged the first | CPU until all of ours run: driver / northd / controller / dockerd | dockerd CPU until all of the no-op plugin\'s run |');
    console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const row of rows) console.log(row);
    console.log(`\nMedians of ${ROUNDS} bursts per cell after one not counted, engine ${ENGINE}, OVN ${await ovnVersion()}, node ${process.version}, ${SETTLE_MS} ms between bursts.`);
  }
}

/** What holds a network the engine would not remove: its endpoints as the engine sees them, and what the driver warned of. */
async function reportLeftovers(engine: DockerEngine, net: string, driverLog: string): Promise<void> {
  const show = async (what: string, args: string[]) =>
    console.error(`${what}: ${await engine.docker(...args).then((r) => r.stdout.trim(), (e: unknown) => (e as Error).message)}`);
  await show('endpoints the engine still has', ['network', 'inspect', '-f', '{{json .Containers}}', net]);
  await show('containers on it', ['ps', '-a', '--filter', `network=${net}`, '--format', '{{.Names}} {{.Status}}']);
  const warnings = (await readDriverLog(driverLog).catch(() => [])).filter((e) => (e.level ?? 0) >= LEVEL.warn);
  console.error(`the driver's warnings and errors (${warnings.length}):`);
  for (const e of warnings.slice(-20)) console.error(JSON.stringify(e));
}

/** ovn-northd's version, of the host's packages or OVN_TEST_ROOT's. */
async function ovnVersion(): Promise<string> {
  const { cmd, args } = ovnBinaries().command('ovn-northd', ['--version']);
  const out = await run(cmd, args).then((r) => r.stdout, () => '');
  return /ovn-northd\D*(\d+\.\d+\.\d+)/.exec(out)?.[1] ?? 'unknown';
}

/** N `docker run -d` at once; then, where there is connectivity, each pings the first. Removed afterwards. */
async function burst(
  engine: DockerEngine,
  image: string,
  net: string,
  kind: Kind,
  n: number,
  pids: Record<keyof Burst['cpu'], number>,
  adopted: () => number,
): Promise<Burst> {
  const tag = randomBytes(3).toString('hex');
  const names = Array.from({ length: n }, (_, i) => `burst-${kind}-${tag}-${i}`);
  const before = await cpuOf(pids);
  const t0 = performance.now();
  try {
    await Promise.all(names.map((c) => engine.docker('run', '-d', '--net', net, '--name', c, image, 'sleep', '3600')));
    const started = performance.now() - t0;
    if (process.env.BENCH_DRIVER_LOG) console.error(`${kind}: ${n} from ${new Date(Date.now() - started).toISOString()} to ${new Date().toISOString()}`);
    // Until all are running, as for the others: the pings below are `docker exec`s, dockerd's work.
    const atStart = await cpuOf(pids);
    let pinged: number | undefined;
    let warm: number | undefined;
    if (kind === 'ours') {
      warm = adopted();
      const first = (await engine.docker('inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', names[0]!)).stdout.trim();
      await Promise.all(
        names.slice(1).map((c) =>
          waitFor(() => engine.docker('exec', c, 'ping', '-c1', '-W1', first).then(() => true, () => undefined), { timeoutMs: 60_000, intervalMs: 100, what: `${c} pinging ${first}` }),
        ),
      );
      pinged = performance.now() - t0;
    }
    const cpu = { driver: atStart.driver - before.driver, northd: atStart.northd - before.northd, controller: atStart.controller - before.controller, dockerd: atStart.dockerd - before.dockerd };
    return { started, ...(pinged !== undefined ? { pinged } : {}), ...(warm !== undefined ? { warm } : {}), cpu };
  } finally {
    // A container the engine could not remove keeps its endpoint: said here, it explains a network that will not go at the end.
    await engine.docker('rm', '-f', ...names).catch((err: unknown) => console.error(`cannot remove a ${kind} burst's containers: ${(err as Error).message}`));
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  }
}

/** utime + stime of each process, in ms (USER_HZ is 100 on Linux). */
async function cpuOf(pids: Record<keyof Burst['cpu'], number>): Promise<Burst['cpu']> {
  const one = async (pid: number) => {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  };
  return { driver: await one(pids.driver), northd: await one(pids.northd), controller: await one(pids.controller), dockerd: await one(pids.dockerd) };
}



main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
