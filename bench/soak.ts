/**
 * bench/soak: N container lifecycles (`docker run --rm`) on one network, and
 * the driver's resident memory and open file descriptors along the way. A
 * driver that leaks grows with every container; one that does not stays
 * flat once warmed up. Also counts what a leak in NB or on the host would
 * leave: ports on the network's switch and the driver's veths.
 *
 * Real parts: single-chassis OVN (userspace datapath), the driver as its own
 * process with its defaults (names from the engine's API, warm ports),
 * Debian's dockerd. Prints a Markdown table for docs/reliability.md.
 *
 *   npm run bench:soak [-- --runs 1000 --samples 4 --engine 20.10 --ipam docker|plugin]
 */
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import type { OvnStack } from '../test/harness/ovn-stack.js';
import { run } from '../test/harness/process.js';
import { startSingleChassisLab } from './lab.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}
const RUNS = Number(arg('runs', '1000'));
/** Samples after the warm-up one: at RUNS/SAMPLES, 2*RUNS/SAMPLES, ..., RUNS. */
const SAMPLES = Number(arg('samples', '4'));
const ENGINE = arg('engine', '20.10') as '20.10' | '26.1';
const IPAM = arg('ipam', 'docker');
/** Containers run before the first sample: caches, JIT and pools settle first. */
const WARM_UP = Number(arg('warm-up', '50'));

interface Sample {
  runs: number;
  rssKiB: number;
  fds: number;
  ports: number;
  veths: number;
  failures: number;
}

async function main(): Promise<void> {
  const sfx = randomBytes(3).toString('hex');
  const lab = await startSingleChassisLab({ engine: ENGINE, name: `ovns${sfx}` });
  const { stack, engine, driver, image, name } = lab;
  const samples: Sample[] = [];
  const started = Date.now();
  try {
    const ipam = IPAM === 'plugin' ? ['--ipam-driver', name] : [];
    const net = `soak-${sfx}`;
    const networkId = (await engine.docker('network', 'create', '-d', name, ...ipam, '--subnet', '10.97.0.0/24', net)).stdout.trim();

    let failures = 0;
    const lifecycle = async () => {
      await engine.docker('run', '--rm', '--net', net, image, 'true').catch((err: unknown) => {
        failures++;
        console.error(`run failed: ${(err as Error).message.split('\n')[0]}`);
      });
    };
    const sample = async (runs: number) => {
      const s = { runs, ...(await processFigures(driver.pid)), ports: await switchPorts(stack, networkId), veths: await driverVeths(), failures };
      samples.push(s);
      console.error(`${runs} runs: ${JSON.stringify(s)} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
    };
    for (let i = 0; i < WARM_UP; i++) await lifecycle();
    await sample(0);
    const step = Math.max(1, Math.round(RUNS / SAMPLES));
    for (let done = 0; done < RUNS; ) {
      const next = Math.min(RUNS, done + step);
      for (; done < next; done++) await lifecycle();
      await sample(done);
    }
    await engine.docker('network', 'rm', net);
  } finally {
    await lab.stop();
  }

  const first = samples[0]!;
  const pct = (now: number, then: number) => `${now >= then ? '+' : ''}${(((now - then) / then) * 100).toFixed(1)}%`;
  console.log('| lifecycles | driver RSS | vs first | open fds | vs first | ports on the switch | driver veths | failed runs |');
  console.log('|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const s of samples) {
    console.log(
      `| ${s.runs} | ${(s.rssKiB / 1024).toFixed(1)} MiB | ${pct(s.rssKiB, first.rssKiB)} | ${s.fds} | ${pct(s.fds, first.fds)} | ${s.ports} | ${s.veths} | ${s.failures} |`,
    );
  }
  console.log(`\n${RUNS} lifecycles after ${WARM_UP} to warm up, engine ${ENGINE}, ${IPAM === 'plugin' ? "the plugin's" : "Docker's"} IPAM, node ${process.version}, ${((Date.now() - started) / 60_000).toFixed(1)} min.`);
}

/** VmRSS and the number of open descriptors of a process (Linux /proc). */
async function processFigures(pid: number): Promise<{ rssKiB: number; fds: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const rssKiB = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN);
  const fds = (await readdir(`/proc/${pid}/fd`)).length;
  return { rssKiB, fds };
}

/** Ports of the network's switch, its gateway's included: a leak in NB shows here. */
async function switchPorts(stack: OvnStack, networkId: string): Promise<number> {
  return (await stack.nbctl('--bare', '--columns=ports', 'list', 'Logical_Switch', networkId)).split(/\s+/).filter(Boolean).length;
}

/** Host ends of the driver's veths in this namespace: a leak on the host shows here. */
async function driverVeths(): Promise<number> {
  const { stdout } = await run('ip', ['-o', 'link', 'show']);
  return stdout.split('\n').filter((l) => /^\d+: ovn[0-9a-f]{12}@/.test(l)).length;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
