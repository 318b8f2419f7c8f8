/**
 * bench/publish-run: `docker run --rm -p PORT:80 --net <ovn network> busybox
 * true`, whose port the driver publishes itself (ProgramExternalConnectivity
 * -> DNAT in its chains, the host port held; no docker_gwbridge), against the
 * same with `--net bridge` (Docker's bridge driver: its DNAT and docker-proxy),
 * paired in one run; and both without `-p`, to show what `-p` costs on each.
 *
 * Docker's bridge publishes ports only with the engine's own iptables, which
 * the harness allows only in a namespace of its own: the lab is host A of
 * test/harness/two-hosts.ts (central OVN in the root namespace, per host a
 * namespace with ovs-vswitchd, userspace datapath, and ovn-controller; host B
 * is an idle second chassis). In host A: Debian's dockerd with its firewall on
 * (`--iptables=true`) and a bridge of its own for `--net bridge`, and the
 * driver as its own process with its defaults (this host as the networks'
 * gateway, the driver's firewall on, 2 warm ports per network).
 *
 * Two networks of ours: Docker's IPAM (`docker network create -d NAME
 * --subnet ...`) and our IPAM (`--ipam-driver NAME`). Before measuring, once:
 * a `-p` container with busybox httpd on the first network has one interface
 * (lo and eth0) and answers at 127.0.0.1:PORT in host A; so does one on
 * `--net bridge`. Then, per network, one phase: a warm-up round that is not
 * counted, then N rounds; a round is two pairs, (ours -p, bridge -p) and
 * (ours, bridge), alternating which pair goes first and, within a pair, which
 * run goes first. Every `-p` run asks for the same host port: `--rm` frees
 * it, and each `docker run` returns only once its container is removed.
 * Reported per network and flags: the median wall time, the bridge's median
 * in the same phase, the median of the per-pair ratios to the bridge run with
 * the same flags, and what `-p` adds on each (median of per-round differences).
 *
 *   npm run bench:publish-run [-- --pairs 20 --port 18080 --gap 0 --engine 20.10 --log-level warn --driver-log FILE]
 *
 * As root; beside other benchmarks, under the host lock:
 *   flock /tmp/ovn-host.lock npm run bench:publish-run -- --pairs 20
 *
 * Everything (containers, networks, engine, driver, harness and its
 * namespaces) is stopped in a finally block, also on failure or on a first
 * Ctrl-C (the current `docker run` ends first); a second Ctrl-C kills
 * everything at once, as the harness does on a signal. If a run fails, the
 * tail of the driver's log is printed and the log kept.
 */
import { randomBytes } from 'node:crypto';
import { copyFile, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ensureBusyboxImage, startDockerEngine, type DockerEngine } from '../test/harness/docker.js';
import { startDriverProcess, type DriverProcess } from '../test/harness/driver-process.js';
import { makePluginDirs, type PluginDirs } from '../test/harness/plugin-dirs.js';
import { isAlive, waitFor } from '../test/harness/process.js';
import { startTwoHosts, type Host, type TwoHosts } from '../test/harness/two-hosts.js';
import { median, time } from './stats.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}
const PAIRS = Number(arg('pairs', '20'));
/** The host port every `-p` run asks for (ours and bridge alike). */
const PORT = Number(arg('port', '18080'));
/** Idle time before each `docker run`; 0 runs them back to back, so background work competes with the next start. */
const GAP_MS = Number(arg('gap', '0'));
const ENGINE = arg('engine', '20.10') as '20.10' | '26.1';
const LOG_LEVEL = arg('log-level', 'warn');
/** Where the driver logs; by default a file the cleanup removes (kept only if a run fails). */
const DRIVER_LOG = arg('driver-log', '');
/** The driver's default; the bench waits for this many warm ports per network before measuring. */
const WARM_PORTS = 2;
const IMAGE = 'busybox:local';

/** Our networks, in table order: the label, and `docker network create` flags (IPAM is filled in below). */
const IPAM = '<ipam>';
const KINDS: [label: string, flags: string[]][] = [
  ["default (this host as gateway), Docker's IPAM", ['--subnet', '10.74.0.0/24']],
  ['default (this host as gateway), our IPAM', ['--ipam-driver', IPAM, '--subnet', '10.75.0.0/24']],
];

class Interrupted extends Error {}

/**
 * A first SIGINT/SIGTERM/SIGHUP only asks the bench to stop after the current
 * run, so that the finally block stops everything the ordinary way. A second,
 * more than 2 s later (npm forwards the terminal's Ctrl-C, so one press can
 * arrive twice), hands the signal back to the harness's handlers, which
 * SIGKILL every tracked process and delete the harness's namespaces, and re-raises it.
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

/** One row: a network of ours with or without `-p`, against bridge with the same flags. */
interface Row {
  label: string;
  publish: boolean;
  median: number;
  /** Median of the bridge runs with the same flags in this network's phase. */
  bridge: number;
  ratio: number;
  minRatio: number;
  maxRatio: number;
}

/** What `-p` adds, per network's phase: median of the per-round differences (with -p minus without). */
interface PublishCost {
  label: string;
  ours: number;
  bridge: number;
}

/** An HTTP GET as a shell command (busybox's wget crashes here). */
function httpGet(ip: string, port: number, nc = 'nc'): string {
  return `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | ${nc} -w 3 ${ip} ${port}`;
}

async function main(): Promise<void> {
  const sfx = randomBytes(3).toString('hex');
  const name = `ovnb${sfx}`;

  let cluster: TwoHosts | undefined;
  let dirs: PluginDirs | undefined;
  let engine: DockerEngine | undefined;
  let driver: DriverProcess | undefined;
  let logFile = '';
  const nets: string[] = [];
  const rows: Row[] = [];
  const costs: PublishCost[] = [];
  let failed = false;
  const check = () => {
    const sig = signals.interrupted();
    if (sig) throw new Interrupted(`interrupted by ${sig}`);
  };
  try {
    cluster = await startTwoHosts();
    const host = cluster.hosts[0];
    check();
    dirs = await makePluginDirs(name);
    logFile = DRIVER_LOG ? path.resolve(DRIVER_LOG) : path.join(dirs.dir, 'driver.log');
    engine = await startDockerEngine({ engine: ENGINE, pluginDir: dirs.pluginDir, netns: host.netns, firewall: true, bridge: true });
    check();
    driver = await startDriverProcess({
      name,
      pluginDir: dirs.socketDir,
      nbRemote: cluster.nbRemote,
      ovsDb: host.ovsRemote,
      logFile,
      netns: host.netns,
      extraArgs: ['--log-level', LOG_LEVEL, '--docker-host', engine.host],
    });
    await ensureBusyboxImage(engine);
    check();

    const labels = new Map<string, string>();
    for (const [i, [label, flags]] of KINDS.entries()) {
      const net = `pubb-${i}-${sfx}`;
      await engine.docker('network', 'create', '-d', name, ...flags.map((f) => (f === IPAM ? name : f)), net);
      nets.push(net);
      labels.set(net, label);
    }
    await settle(cluster, WARM_PORTS * KINDS.length);
    console.error(`up: engine ${engine.version} in ${host.netns} with its firewall, ${WARM_PORTS * KINDS.length} warm ports up`);

    await verify(engine, host, nets[0]!, sfx);
    await verify(engine, host, 'bridge', sfx);
    check();

    const dockerRun = (network: string, publish: boolean) => () =>
      engine!.docker('run', '--rm', ...(publish ? ['-p', `${PORT}:80`] : []), '--net', network, IMAGE, 'true');
    for (const net of nets) {
      // samples[publish][ours|bridge]
      const samples = { p: { own: [] as number[], bridge: [] as number[] }, plain: { own: [] as number[], bridge: [] as number[] } };
      for (let round = -1; round < PAIRS; round++) {
        // Alternate which pair goes first (every other round), and within a pair which run goes first.
        const flagsOrder = Math.floor((round + 1) / 2) % 2 ? [false, true] : [true, false];
        const netsOrder = (round + 1) % 2 ? ['bridge', net] : [net, 'bridge'];
        for (const publish of flagsOrder) {
          for (const n of netsOrder) {
            check();
            if (GAP_MS > 0) await sleep(GAP_MS);
            const ms = await time(dockerRun(n, publish));
            if (round < 0) continue; // the warm-up round
            const s = publish ? samples.p : samples.plain;
            (n === 'bridge' ? s.bridge : s.own).push(ms);
          }
        }
      }
      for (const publish of [true, false]) {
        const s = publish ? samples.p : samples.plain;
        const ratios = s.own.map((o, i) => o / s.bridge[i]!);
        rows.push({
          label: labels.get(net)!,
          publish,
          median: median(s.own),
          bridge: median(s.bridge),
          ratio: median(ratios),
          minRatio: Math.min(...ratios),
          maxRatio: Math.max(...ratios),
        });
      }
      costs.push({
        label: labels.get(net)!,
        ours: median(samples.p.own.map((v, i) => v - samples.plain.own[i]!)),
        bridge: median(samples.p.bridge.map((v, i) => v - samples.plain.bridge[i]!)),
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
    // plugin call of a `docker network rm` hangs in the engine's retries. The engine's and the harness's ends
    // take all of it with them anyway (veths and iptables in host A's namespace, ports in the NB).
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
    if (cluster) await attempt('two-hosts harness', () => cluster!.stop());
    signals.release();
    if (errors.length && !failed) throw new AggregateError(errors, 'cleanup failed');
  }

  const flags = (publish: boolean) => (publish ? `\`-p ${PORT}:80\`` : 'no `-p`');
  console.log('| network | flags | median | `--net bridge`, same flags, same phase | ratio to bridge | per-pair ratios |');
  console.log('|---|---|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(
      `| ${r.label} | ${flags(r.publish)} | ${r.median.toFixed(0)} ms | ${r.bridge.toFixed(0)} ms | **${r.ratio.toFixed(2)}x** | ${r.minRatio.toFixed(2)}-${r.maxRatio.toFixed(2)}x |`,
    );
  }
  console.log('\nWhat `-p` adds (median of the per-round differences, with `-p` minus without):\n');
  console.log('| phase | ours | `--net bridge` |');
  console.log('|---|---:|---:|');
  for (const c of costs) console.log(`| ${c.label} | ${signed(c.ours)} ms | ${signed(c.bridge)} ms |`);
  console.log(
    `\n${PAIRS} rounds per network after one warm-up round, engine ${ENGINE} with its firewall, node ${process.version}, ${GAP_MS} ms between runs, driver --log-level ${LOG_LEVEL}.`,
  );
}

function signed(ms: number): string {
  return `${ms >= 0 ? '+' : ''}${ms.toFixed(0)}`;
}

/**
 * Once, before measuring: a `-p PORT:80` container with busybox httpd on this
 * network has lo and eth0 only (no docker_gwbridge endpoint) and answers at
 * 127.0.0.1:PORT in the engine's namespace. Removed again, which frees the port.
 */
async function verify(engine: DockerEngine, host: Host, net: string, sfx: string): Promise<void> {
  const c = `pubcheck-${net === 'bridge' ? 'bridge' : 'ours'}-${sfx}`;
  const script = 'mkdir -p /www && echo "$SERVES" > /www/index.html && exec httpd -f -p 80 -h /www';
  await engine.docker('run', '-d', '--net', net, '--name', c, '-e', `SERVES=${c}`, '-p', `${PORT}:80`, IMAGE, 'sh', '-c', script);
  try {
    await waitFor(
      async () => ((await engine.docker('exec', c, 'sh', '-c', httpGet('127.0.0.1', 80))).stdout.includes(c) ? true : undefined),
      { what: `httpd in ${c}`, timeoutMs: 15_000, intervalMs: 200 },
    );
    const links = (await engine.docker('exec', c, 'ip', '-o', 'link')).stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(':')[1]?.trim().split('@')[0]);
    if (links.join(' ') !== 'lo eth0') throw new Error(`${c} on ${net}: interfaces ${links.join(' ')}, not lo and eth0 only`);
    const got = await waitFor(
      async () => {
        const r = await host.exec('sh', ['-c', httpGet('127.0.0.1', PORT, 'busybox nc')]).catch((e: unknown) => ({ stdout: String(e) }));
        return r.stdout.includes(c) ? r.stdout : undefined;
      },
      { what: `${c} on ${net} at 127.0.0.1:${PORT} from ${host.netns}`, timeoutMs: 10_000, intervalMs: 250 },
    );
    console.error(`checked: ${net === 'bridge' ? '--net bridge' : 'our network'}: -p ${PORT}:80 has lo and eth0 only and 127.0.0.1:${PORT} answers (${got.trim().split('\n').pop()})`);
  } finally {
    await engine.docker('rm', '-f', c);
  }
}

/** Before the phases: every network's warm ports made and up, and OVN caught up with the NB. */
async function settle(cluster: TwoHosts, warmPorts: number): Promise<void> {
  const ready = async () => {
    const rows = await cluster.nbctl('--format=csv', '--data=bare', '--no-headings', '--columns=up,external_ids', 'list', 'Logical_Switch_Port');
    return rows.split('\n').filter((r) => r.startsWith('true,') && r.includes('docker:warm=')).length;
  };
  await waitFor(async () => ((await ready()) >= warmPorts ? true : undefined), { timeoutMs: 60_000, what: `${warmPorts} warm ports up` });
  await cluster.nbctl('--wait=hv', 'sync');
}

/** On a failure: the tail of the driver's log on stderr, and (with sfx) the whole log copied out of the dirs the cleanup removes. */
async function keepDriverLog(logFile: string, sfx: string | undefined): Promise<void> {
  try {
    let kept = logFile;
    if (sfx !== undefined) {
      kept = path.join(os.tmpdir(), `publish-run-${sfx}-driver.log`);
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
