/**
 * bench/nested-run: `docker run --rm --net <ovn network> busybox true` inside
 * a VM (the driver in nested mode), against `--net bridge` of the same engine
 * in the same VM, paired in one run.
 *
 * The lab is test/harness/nested-vm.ts: central OVN, a hypervisor namespace
 * with ovn-controller (userspace datapath), and a "VM" namespace joined to it
 * by a veth, with its own ovs-vswitchd and breth0 and no ovn-controller. In
 * the VM: Debian's dockerd (with a bridge of its own for `--net bridge`) and
 * the driver as its own process in nested mode (`--vm-port`), so that every
 * container's port is a child (parent_name + VLAN tag) of the VM's port and its
 * veth an access port of that tag on breth0. In nested mode the only egress is
 * Docker's docker_gwbridge (`--gateway docker`), so each container on an OVN
 * network also gets a second endpoint there.
 *
 * Two networks in the VM, each on warm ports (the driver's default of 2 per
 * network): one of Docker's IPAM and one of the driver's. For each network,
 * one phase: a warm-up pair that is not counted, then N pairs of the
 * network's run and a `--net bridge` run, alternating which goes first.
 * Reported per network: the median wall time and the median of the per-pair
 * ratios to bridge. Prints a Markdown table.
 *
 *   npm run bench:nested-run [-- --pairs 20 --gap 0 --engine 20.10 --log-level warn --driver-log FILE]
 *
 * As root; beside other benchmarks, under the host lock:
 *   flock /tmp/ovn-host.lock npm run bench:nested-run -- --pairs 20
 *
 * Everything (engine, driver, lab) is stopped in a finally block, also on
 * failure or on a first Ctrl-C (the current `docker run` ends first); a
 * second Ctrl-C kills everything at once, as the harness does on a signal.
 * If a run fails, the tail of the driver's log is printed and the log kept.
 */
import { randomBytes } from 'node:crypto';
import { copyFile, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ensureBusyboxImage, startDockerEngine, type DockerEngine } from '../test/harness/docker.js';
import { startDriverProcess, type DriverProcess } from '../test/harness/driver-process.js';
import { startNestedLab, type NestedLab } from '../test/harness/nested-vm.js';
import { makePluginDirs, type PluginDirs } from '../test/harness/plugin-dirs.js';
import { isAlive, waitFor } from '../test/harness/process.js';
import { median, time } from './stats.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}
const PAIRS = Number(arg('pairs', '20'));
/** Idle time before each `docker run`; 0 runs them back to back, so background work competes with the next start. */
const GAP_MS = Number(arg('gap', '0'));
const ENGINE = arg('engine', '20.10') as '20.10' | '26.1';
const LOG_LEVEL = arg('log-level', 'warn');
/** Where the driver logs; by default a file the cleanup removes (kept only if a run fails). */
const DRIVER_LOG = arg('driver-log', '');
/** The driver's default; the bench waits for this many warm ports per network before measuring. */
const WARM_PORTS = 2;

/** The networks compared, in table order: the label, and `docker network create` flags (IPAM is filled in below). */
const IPAM = '<ipam>';
const KINDS: [label: string, flags: string[]][] = [
  ["Docker's IPAM", ['--subnet', '10.72.0.0/24']],
  ['our IPAM', ['--ipam-driver', IPAM, '--subnet', '10.73.0.0/24']],
];

class Interrupted extends Error {}

/**
 * A first SIGINT/SIGTERM/SIGHUP only asks the bench to stop after the current
 * run, so that the finally block stops everything the ordinary way. A second,
 * more than 2 s later (npm forwards the terminal's Ctrl-C, so one press can
 * arrive twice), hands the signal back to the harness's handlers, which
 * SIGKILL every tracked process and delete the lab's namespaces, and re-raises it.
 */
function trapSignals(): { interrupted(): NodeJS.Signals | undefined; release(): void } {
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  const saved = new Map(signals.map((s) => [s, process.listeners(s)]));
  let got: NodeJS.Signals | undefined;
  let at = 0;
  const release = () => {
    for (const s of signals) {
      process.removeListener(s, onSignal);
      for (const l of saved.get(s)!) if (!process.listeners(s).includes(l)) process.on(s, l);
    }
  };
  function onSignal(sig: NodeJS.Signals): void {
    if (got) {
      if (Date.now() - at < 2000) return;
      console.error(`${sig} again: killing everything`);
      release();
      process.kill(process.pid, sig);
      return;
    }
    got = sig;
    at = Date.now();
    console.error(`${sig}: stopping after the current run and cleaning up (again to kill at once)`);
  }
  for (const s of signals) {
    process.removeAllListeners(s);
    process.on(s, onSignal);
  }
  return { interrupted: () => got, release };
}

const signals = trapSignals();

interface Result {
  label: string;
  network: string;
  median: number;
  ratio: number;
  /** Median of the bridge runs of this network's phase. */
  bridge: number;
  /** Lowest and highest per-pair ratio. */
  minRatio: number;
  maxRatio: number;
}

async function main(): Promise<void> {
  const sfx = randomBytes(3).toString('hex');
  const name = `ovnb${sfx}`;

  let lab: NestedLab | undefined;
  let dirs: PluginDirs | undefined;
  let engine: DockerEngine | undefined;
  let driver: DriverProcess | undefined;
  let logFile = '';
  const nets: string[] = [];
  const results: Result[] = [];
  const bridgeAll: number[] = [];
  let failed = false;
  const check = () => {
    const sig = signals.interrupted();
    if (sig) throw new Interrupted(`interrupted by ${sig}`);
  };
  try {
    lab = await startNestedLab();
    const vm = lab.vm;
    check();
    dirs = await makePluginDirs(name);
    logFile = DRIVER_LOG ? path.resolve(DRIVER_LOG) : path.join(dirs.dir, 'driver.log');
    engine = await startDockerEngine({ engine: ENGINE, pluginDir: dirs.pluginDir, netns: vm.netns, bridge: true });
    check();
    driver = await startDriverProcess({
      name,
      pluginDir: dirs.socketDir,
      nbRemote: lab.nbRemote,
      ovsDb: vm.ovsRemote,
      logFile,
      netns: vm.netns,
      extraArgs: ['--vm-port', vm.port, '--log-level', LOG_LEVEL, '--docker-host', engine.host],
    });
    const image = await ensureBusyboxImage(engine);
    check();

    const labels = new Map<string, string>();
    for (const [i, [label, flags]] of KINDS.entries()) {
      const net = `nested-${i}-${sfx}`;
      await engine.docker('network', 'create', '-d', name, ...flags.map((f) => (f === IPAM ? name : f)), net);
      nets.push(net);
      labels.set(net, label);
    }
    await settle(lab, WARM_PORTS * KINDS.length);
    console.error(`lab up: VM port ${vm.port}, ${WARM_PORTS * KINDS.length} warm child ports up; engine ${engine.version}`);

    const dockerRun = (network: string) => () => engine!.docker('run', '--rm', '--net', network, image, 'true');
    // Each network gets its own phase with its own bridge runs, as in bench/docker-run.ts.
    for (const net of nets) {
      for (const n of [net, 'bridge']) {
        check();
        await dockerRun(n)();
      }
      const own: number[] = [];
      const bridge: number[] = [];
      for (let i = 0; i < PAIRS; i++) {
        // Alternate which goes first, so that neither always runs on a warmer machine.
        for (const n of i % 2 ? ['bridge', net] : [net, 'bridge']) {
          check();
          if (GAP_MS > 0) await sleep(GAP_MS);
          (n === 'bridge' ? bridge : own).push(await time(dockerRun(n)));
        }
      }
      bridgeAll.push(...bridge);
      const ratios = own.map((o, i) => o / bridge[i]!);
      results.push({
        label: labels.get(net)!,
        network: net,
        median: median(own),
        ratio: median(ratios),
        bridge: median(bridge),
        minRatio: Math.min(...ratios),
        maxRatio: Math.max(...ratios),
      });
      console.error(`done: ${labels.get(net)}`);
    }
  } catch (e) {
    failed = true;
    throw e;
  } finally {
    // An interrupted `docker run` fails too (the CLI got the signal): that is no failure of the driver's.
    if (failed && logFile && !signals.interrupted()) await keepDriverLog(logFile, DRIVER_LOG ? undefined : sfx);
    const errors: unknown[] = [];
    const attempt = async (what: string, fn: () => Promise<unknown>) => {
      await fn().catch((e: unknown) => {
        console.error(`cleanup: ${what} failed:`, e);
        errors.push(e);
      });
    };
    // Containers and networks through the engine only while the driver serves it: a Ctrl-C in a terminal
    // reaches the driver too (it shares our process group; the engine and OVS do not), and without it every
    // plugin call of a `docker network rm` hangs in the engine's retries. The engine's and the lab's ends
    // take all of it with them anyway (veths in the VM's namespace, ports in the lab's NB).
    if (engine && driver && !signals.interrupted() && isAlive(driver.pid)) {
      const e = engine;
      await attempt('containers', async () => {
        const ids = (await e.docker('ps', '-aq')).stdout.split(/\s+/).filter(Boolean);
        if (ids.length) await e.docker('rm', '-f', ...ids);
      });
      for (const net of nets) await attempt(`network rm ${net}`, () => e.docker('network', 'rm', net));
    }
    if (engine) await attempt('engine', () => engine!.stop());
    if (driver) await attempt('driver', () => driver!.stop());
    if (dirs) await attempt('plugin dirs', () => dirs!.remove());
    if (lab) await attempt('lab', () => lab!.stop());
    signals.release();
    if (errors.length && !failed) throw new AggregateError(errors, 'cleanup failed');
  }

  console.log(`| network in the VM | median | ratio to bridge | bridge in its phase | per-pair ratios |`);
  console.log('|---|---:|---:|---:|---:|');
  console.log(`| \`--net bridge\` | ${median(bridgeAll).toFixed(0)} ms | 1.00x | | |`);
  for (const r of results) {
    console.log(
      `| ${r.label} | ${r.median.toFixed(0)} ms | **${r.ratio.toFixed(2)}x** | ${r.bridge.toFixed(0)} ms | ${r.minRatio.toFixed(2)}-${r.maxRatio.toFixed(2)}x |`,
    );
  }
  console.log(
    `\n${PAIRS} pairs per network after one warm-up pair, engine ${ENGINE}, node ${process.version}, ${GAP_MS} ms between runs, driver --log-level ${LOG_LEVEL}.`,
  );
}

/**
 * Before the phases: every network's warm ports made, children of the VM's
 * port, and up (in nested mode a child's up follows the parent's binding),
 * and OVN caught up with the NB.
 */
async function settle(lab: NestedLab, warmPorts: number): Promise<void> {
  const ready = async () => {
    const rows = await lab.nbctl(
      '--format=csv', '--data=bare', '--no-headings', '--columns=up,parent_name,external_ids', 'list', 'Logical_Switch_Port',
    );
    return rows.split('\n').filter((r) => r.startsWith(`true,${lab.vm.port},`) && r.includes('docker:warm=')).length;
  };
  await waitFor(async () => ((await ready()) >= warmPorts ? true : undefined), {
    timeoutMs: 60_000,
    what: `${warmPorts} warm child ports of the VM's port up`,
  });
  await lab.nbctl('--wait=hv', 'sync');
}

/** On a failure: the tail of the driver's log on stderr, and (with sfx) the whole log copied out of the dirs the cleanup removes. */
async function keepDriverLog(logFile: string, sfx: string | undefined): Promise<void> {
  try {
    let kept = logFile;
    if (sfx !== undefined) {
      kept = path.join(os.tmpdir(), `nested-run-${sfx}-driver.log`);
      await copyFile(logFile, kept);
    }
    const lines = (await readFile(logFile, 'utf8')).split('\n').filter(Boolean);
    console.error(`--- driver log, last ${Math.min(40, lines.length)} of ${lines.length} lines (all kept in ${kept}) ---`);
    for (const line of lines.slice(-40)) console.error(line);
    console.error('--- end of driver log ---');
  } catch (e) {
    console.error(`could not read the driver log ${logFile}:`, e);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

main().catch((err: unknown) => {
  const sig = signals.interrupted();
  if (sig) {
    // Cleaned up already: end by the signal, as its default action would.
    console.error(`interrupted by ${sig}`);
    process.kill(process.pid, sig);
    return;
  }
  console.error(err);
  process.exit(1);
});
