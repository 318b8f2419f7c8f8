/**
 * Private Docker engines for tests: Debian 12's dockerd 20.10, or Debian 13's
 * 26.1 unpacked by fetch-docker-26.sh, each with its own containerd, data,
 * exec root, API socket, cgroup parent and (optionally) plugin directories, so
 * several can run side by side and none touches a system engine.
 *
 * Layout of an engine's dir:
 *   containerd/   config.toml, root/, state/, containerd.sock (private containerd)
 *   data/ exec/   --data-root, --exec-root
 *   docker.sock docker.pid daemon.json dockerd.log containerd.log
 *   cli/          DOCKER_CONFIG of the CLI, so ~/.docker (credential helpers…) is never read
 *   etc-docker/ run-plugins/  the engine's private /etc/docker and
 *                 /run/docker/plugins (pluginDir mode only)
 *
 * Containers' cgroups go under a --cgroup-parent named after the dir, so
 * none lands in a /docker cgroup another engine uses and stop() can remove them.
 *
 * Shared with the machine because Docker hard-codes it: dockerd creates
 * /run/docker/plugins (so does the harness, as a mount point) and it is never
 * removed, as other engines may be using it; containerd shims put their
 * sockets in /run/containerd/s (names hashed with our containerd's address).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, closeSync, constants, existsSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isAlive, makeTempDir, onExitSync, registerCleanup, run, stopPid, waitFor } from './process.js';

export type EngineVersion = '20.10' | '26.1';

export interface DockerEngine {
  engine: EngineVersion;
  /** Engine version reported by `docker version`, e.g. "20.10.24+dfsg1". */
  version: string;
  /** "unix:///…/docker.sock" */
  host: string;
  /** dockerd's pid. */
  pid: number;
  containerdPid: number;
  dir: string;
  /** Time from spawning containerd to `docker version` answering. */
  startupMs: number;
  /** The engine's own bridge for `--net bridge` (opts.bridge only). */
  bridge?: TestBridge;
  /** docker CLI with -H host; rejects with a CommandError quoting stderr. */
  docker(...args: string[]): Promise<{ stdout: string; stderr: string }>;
  /** Stops the engine by pid and removes only what this harness created. Idempotent. */
  stop(): Promise<void>;
  /**
   * Stops dockerd (SIGTERM, as `systemctl restart docker` does) and starts it
   * again with the same flags and containerd; `pid` is the new one's.
   */
  restartDaemon(): Promise<void>;
}

export interface TestBridge {
  name: string;
  /** e.g. "10.253.17.0/24" */
  subnet: string;
  /** The bridge's own address, the containers' gateway, e.g. "10.253.17.1". */
  gateway: string;
}

export interface DockerEngineOptions {
  engine?: EngineVersion;
  /**
   * Makes this directory the engine's /etc/docker/plugins (spec files) and
   * gives it an empty private /run/docker/plugins, in a private mount
   * namespace: the engine sees only the plugins the test puts there.
   * Its containerd runs in that namespace too (runc must see the rootfs
   * dockerd mounts). The price: a container's SandboxKey (exec/netns/…) is
   * a mount inside that namespace, an empty file from the host; reach the
   * container's netns through /proc/<State.Pid>/ns/net instead.
   */
  pluginDir?: string;
  /**
   * Gives the engine a default "bridge" network on a bridge of its own
   * (unique name and subnet) instead of --bridge=none. Two engines cannot
   * share docker0, and dockerd refuses to create a bridge with any other
   * name itself, so the harness creates it and passes --bridge=NAME; dockerd
   * then takes the bridge's address as the network's gateway and subnet.
   */
  bridge?: boolean;
  /**
   * Runs containerd and dockerd inside this network namespace (a name under
   * /var/run/netns, e.g. a host of two-hosts.ts), entered with `nsenter
   * --net` rather than `ip netns exec`: the latter remounts /sys, which hides
   * /sys/fs/cgroup, and dockerd then cannot run containers. The engine's
   * links (docker_gwbridge, the bridge of opts.bridge, the Join interfaces
   * a network driver hands it) are then that namespace's, and the driver
   * serving this engine must run there too (driver-process.ts, netns).
   */
  netns?: string;
  /**
   * Lets dockerd write its iptables rules and turn on IP forwarding, as a
   * system engine does (its bridges' isolation, published ports, NAT). Only
   * with `netns`: the rules are then that namespace's, never the machine's.
   */
  firewall?: boolean;
}

// ---- where the engines come from -------------------------------------------

const DOCKER26_DIR = process.env.OVN_DOCKER26_DIR ?? '/var/cache/ovn-docker-driver-test/docker-26';
const FETCH_DOCKER26 = fileURLToPath(new URL('./fetch-docker-26.sh', import.meta.url));
// Debian 12's CLI for both engines (trixie moved its CLI to docker-cli, not
// fetched), not whatever `docker` is first on PATH (a developer machine may
// have another in /usr/local/bin): its API 1.41 is served by 20.10 and 26.1.
const DOCKER_CLI = process.env.OVN_DOCKER_CLI ?? '/usr/bin/docker';
const BUSYBOX = '/bin/busybox';

interface EngineBinaries {
  dockerd: string;
  userlandProxy?: string;
}

function binariesOf(engine: EngineVersion): EngineBinaries {
  if (engine === '20.10') return { dockerd: '/usr/sbin/dockerd' };
  return { dockerd: `${DOCKER26_DIR}/usr/sbin/dockerd`, userlandProxy: `${DOCKER26_DIR}/usr/sbin/docker-proxy` };
}

// Both engines run on Debian 12's containerd and runc (26.1 included: its
// Debian package only asks for containerd >= 1.4 and runc >= 1.0).
const REQUIRED_TOOLS = ['containerd', 'containerd-shim-runc-v2', 'runc', 'unshare', 'nsenter', 'mount', 'umount', 'ip', 'tar'];
const SBIN_PATH = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

function daemonEnv(): NodeJS.ProcessEnv {
  const dirs = (process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(':');
  // containerd finds its shim, and the shim finds runc, through PATH.
  for (const d of SBIN_PATH) if (!dirs.includes(d)) dirs.push(d);
  return { ...process.env, PATH: dirs.join(':') };
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(tool: string): boolean {
  return (daemonEnv().PATH ?? '').split(':').some((d) => d !== '' && isExecutable(path.join(d, tool)));
}

export interface Availability {
  ok: boolean;
  reason?: string;
}

const availability = new Map<EngineVersion, Promise<Availability>>();

/** Whether `engine` can be started here, and if not why; fetches 26.1 on first use. */
export function dockerAvailability(engine: EngineVersion): Promise<Availability> {
  let p = availability.get(engine);
  if (!p) {
    p = checkAvailability(engine);
    availability.set(engine, p);
  }
  return p;
}

export async function dockerAvailable(engine: EngineVersion): Promise<boolean> {
  return (await dockerAvailability(engine)).ok;
}

async function checkAvailability(engine: EngineVersion): Promise<Availability> {
  if (process.getuid?.() !== 0) return { ok: false, reason: 'not root' };
  const missing = REQUIRED_TOOLS.filter((t) => !onPath(t));
  if (!isExecutable(DOCKER_CLI)) missing.push(DOCKER_CLI);
  if (!isExecutable(BUSYBOX)) missing.push(BUSYBOX);
  if (missing.length > 0) return { ok: false, reason: `missing ${missing.join(', ')}` };
  const { dockerd } = binariesOf(engine);
  if (engine === '26.1' && !isExecutable(dockerd)) {
    try {
      await run('bash', [FETCH_DOCKER26, DOCKER26_DIR], { timeoutMs: 10 * 60_000 });
    } catch (e) {
      return { ok: false, reason: `fetching Debian 13's docker.io failed: ${e instanceof Error ? e.message : String(e)}` };
    }
  }
  if (!isExecutable(dockerd)) return { ok: false, reason: `no ${dockerd}` };
  try {
    await run(dockerd, ['--version']);
  } catch (e) {
    return { ok: false, reason: `${dockerd} does not run: ${e instanceof Error ? e.message : String(e)}` };
  }
  return { ok: true };
}

// ---- live engines and crash cleanup ----------------------------------------

interface LiveEngine {
  dir: string;
  containerdSock: string;
  containerdState: string;
  cgroupParent: string;
  containerd?: Spawned;
  dockerd?: Spawned;
  bridge?: TestBridge;
  /** Linux bridge of the engine's docker_gwbridge network, named by us (see createGwBridge). */
  gwBridge?: string;
  /** The network namespace the engine and its links live in (opts.netns); the root one if absent. */
  netns?: string;
}

/** `ip` arguments acting on the engine's namespace: never the root one's link of the same name. */
function ipIn(netns: string | undefined, args: readonly string[]): string[] {
  return netns === undefined ? [...args] : ['-n', netns, ...args];
}

function netnsPath(netns: string): string {
  return path.join('/var/run/netns', netns);
}

const liveEngines = new Set<LiveEngine>();

/**
 * What is left when the test process dies without stop(): SIGKILL by pid the
 * engine, its containerd, and any shim of that containerd with the containers
 * under it; then the same unmount/remove as stop(), synchronously.
 */
function killEnginesSync(): void {
  for (const live of liveEngines) {
    const shimSockets = shimSocketsSync(live.containerdState);
    const own = [live.dockerd, live.containerd].map(ownPid).filter((p): p is number => p !== undefined);
    const pids = withDescendants([...own, ...shimPids(live.containerdSock)]);
    for (const pid of pids) signal(pid, 'SIGKILL');
    const deadline = Date.now() + 3000;
    while ([...pids].some(isAlive) && Date.now() < deadline) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    for (const mp of mountsUnder(live.dir)) {
      try {
        execFileSync('umount', ['-l', mp], { stdio: 'ignore' });
      } catch {
        // gone already, or not ours to force
      }
    }
    for (const link of [live.bridge?.name, live.gwBridge]) {
      if (!link) continue;
      try {
        execFileSync('ip', ipIn(live.netns, ['link', 'del', link]), { stdio: 'ignore' });
      } catch {
        // never created, or already gone
      }
    }
    removeCgroupsSync(live.cgroupParent);
    for (const socket of shimSockets) rmSync(socket, { force: true });
    if (mountsUnder(live.dir).length === 0) rmSync(live.dir, { recursive: true, force: true });
  }
  liveEngines.clear();
}

// process.ts runs it when the test process exits or dies of a signal.
onExitSync(killEnginesSync);

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // exited in between
  }
}

function procEntries(): number[] {
  return readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .map(Number);
}

function readProc(pid: number, file: string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * Shims re-parent themselves away from containerd, so they are found by the
 * containerd address on their command line instead of by parentage.
 */
function shimPids(containerdSock: string): number[] {
  return procEntries().filter((pid) => {
    const argv = readProc(pid, 'cmdline')?.split('\0') ?? [];
    return (argv[0] ?? '').includes('containerd-shim') && argv.includes(containerdSock);
  });
}

function withDescendants(roots: readonly number[]): Set<number> {
  const children = new Map<number, number[]>();
  for (const pid of procEntries()) {
    const stat = readProc(pid, 'stat');
    if (!stat) continue;
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  }
  const all = new Set<number>();
  const todo = [...roots];
  for (let pid = todo.pop(); pid !== undefined; pid = todo.pop()) {
    if (all.has(pid)) continue;
    all.add(pid);
    todo.push(...(children.get(pid) ?? []));
  }
  return all;
}

function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

/** Mount points at or below dir in this process's mount namespace, newest first. */
function mountsUnder(dir: string): string[] {
  const lines = readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
  const points = lines.map((l) => unescapeMountPath(l.split(' ')[4] ?? '')).filter((mp) => mp === dir || mp.startsWith(`${dir}/`));
  return points.reverse();
}

function removeCgroupsSync(parent: string): void {
  let hierarchies: string[];
  try {
    hierarchies = ['', ...readdirSync('/sys/fs/cgroup')];
  } catch {
    return;
  }
  for (const h of hierarchies) {
    const top = path.join('/sys/fs/cgroup', h, parent);
    if (!existsSync(top)) continue;
    // Only directories: a cgroup's files cannot (and need not) be removed.
    const dirs: string[] = [];
    const walk = (d: string): void => {
      for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(d, e.name));
      dirs.push(d);
    };
    try {
      walk(top);
      for (const d of dirs) rmdirSync(d);
    } catch {
      // a process is still in it; nothing more to do from here
    }
  }
}

/**
 * A shim that was killed leaves its socket in /run/containerd/s, under a
 * hashed name; the task's bundle in our containerd's state records which.
 * Read them before killing anything: containerd deletes a dead shim's bundle
 * (but not its socket).
 */
function shimSocketsSync(stateDir: string): string[] {
  const sockets: string[] = [];
  const tasks = path.join(stateDir, 'io.containerd.runtime.v2.task');
  const list = (d: string): string[] => {
    try {
      return readdirSync(d);
    } catch {
      return [];
    }
  };
  for (const ns of list(tasks)) {
    for (const id of list(path.join(tasks, ns))) {
      let address: string;
      try {
        address = readFileSync(path.join(tasks, ns, id, 'address'), 'utf8').trim();
      } catch {
        continue;
      }
      const socket = address.replace(/^unix:\/\//, '');
      if (path.dirname(socket) === '/run/containerd/s') sockets.push(socket);
    }
  }
  return sockets;
}

// ---- bridge for --net bridge ------------------------------------------------

/**
 * A /24 in 10.<first..last>.N.0 that no address or route on this host uses
 * yet. Engines of parallel test files pick at the same time, before either
 * has added its address: the wide random space (thousands of /24s) keeps
 * two of them from drawing the same one.
 */
async function freePrefix(range: { first: number; last: number }, netns: string | undefined): Promise<string> {
  const inUse =
    (await run('ip', ipIn(netns, ['-4', '-o', 'addr', 'show']))).stdout + (await run('ip', ipIn(netns, ['-4', 'route', 'show', 'table', 'all']))).stdout;
  for (let attempt = 0; attempt < 64; attempt++) {
    const second = range.first + (randomBytes(2).readUInt16BE(0) % (range.last - range.first + 1));
    const prefix = `10.${second}.${1 + (randomBytes(1).readUInt8(0) % 254)}.`;
    if (!inUse.includes(prefix)) return prefix;
  }
  throw new Error(`no free /24 in 10.${range.first}-${range.last}.N.0 for a test bridge`);
}

/**
 * A container whose remote-driver network gives no gateway gets a second
 * interface on the engine's "docker_gwbridge" network, whose Linux bridge is
 * named docker_gwbridge too: two engines would share it and it would outlive
 * them. Created up front, it gets a name and subnet of this engine's own,
 * and is deleted by that name on stop.
 */
async function createGwBridge(live: LiveEngine, cli: Cli): Promise<void> {
  const name = `ovngw${randomBytes(4).toString('hex')}`;
  const prefix = await freePrefix({ first: 192, last: 223 }, live.netns);
  live.gwBridge = name;
  await cli(30_000, [
    'network', 'create', '--driver', 'bridge', '--subnet', `${prefix}0/24`,
    '-o', `com.docker.network.bridge.name=${name}`,
    '-o', 'com.docker.network.bridge.enable_icc=false',
    'docker_gwbridge',
  ]);
}

async function createBridge(live: LiveEngine): Promise<TestBridge> {
  const name = `ovndk${randomBytes(4).toString('hex')}`;
  const prefix = await freePrefix({ first: 224, last: 253 }, live.netns);
  const bridge = { name, subnet: `${prefix}0/24`, gateway: `${prefix}1` };
  await run('ip', ipIn(live.netns, ['link', 'add', name, 'type', 'bridge']));
  // Only now is it ours to delete.
  live.bridge = bridge;
  await run('ip', ipIn(live.netns, ['addr', 'add', `${bridge.gateway}/24`, 'dev', name]));
  await run('ip', ipIn(live.netns, ['link', 'set', name, 'up']));
  return bridge;
}

// ---- starting ---------------------------------------------------------------

interface Spawned {
  child: ChildProcess;
  exited(): string | undefined;
}

function spawnLogged(cmd: string, args: readonly string[], logFile: string, cwd: string): Spawned {
  const fd = openSync(logFile, 'a');
  let exit: string | undefined;
  // Own process group: a Ctrl-C meant for the test runner must not reach the
  // engine before the cleanup hooks had a chance to stop it in order.
  const child = spawn(cmd, args, { cwd, env: daemonEnv(), detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  child.on('error', (e) => {
    exit = e.message;
  });
  child.on('exit', (code, sig) => {
    exit = `exit ${code ?? sig ?? '?'}`;
  });
  // Never keep the test process alive for a forgotten engine: the exit hook kills it.
  child.unref();
  return { child, exited: () => exit };
}

/**
 * The pid, while it is still the process we spawned: node reaps its
 * children, and with pid_max at 32768 a reaped pid is soon someone else's.
 */
function ownPid(s: Spawned | undefined): number | undefined {
  return s && s.exited() === undefined ? s.child.pid : undefined;
}

async function logTail(file: string, lines = 15): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** Polls probe until it succeeds, failing early (with the log) if the daemon dies. */
async function waitReady<T>(what: string, daemon: Spawned, logFile: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const r = await waitFor(
    async () => {
      if (daemon.exited() !== undefined) return { dead: daemon.exited() };
      const v = await probe();
      return v === undefined ? undefined : { value: v };
    },
    { what, timeoutMs, intervalMs: 50 },
  ).catch(async (e: unknown) => {
    throw new Error(`${e instanceof Error ? e.message : String(e)}\n${logFile}:\n${await logTail(logFile)}`);
  });
  if ('dead' in r) throw new Error(`${what}: the daemon exited (${r.dead})\n${logFile}:\n${await logTail(logFile)}`);
  return r.value;
}

function containerdConfig(dir: string): string {
  // JSON strings are valid TOML basic strings.
  const q = (s: string): string => JSON.stringify(s);
  return [
    'version = 2',
    `root = ${q(path.join(dir, 'root'))}`,
    `state = ${q(path.join(dir, 'state'))}`,
    // CRI would look for CNI configuration and is of no use to dockerd.
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]',
    `  address = ${q(path.join(dir, 'containerd.sock'))}`,
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = ${q(path.join(dir, 'opt'))}`,
    '',
  ].join('\n');
}

// Positional arguments only: $1 a private /etc/docker holding an empty
// plugins/, $2 the plugin dir, $3 a private /run/docker/plugins, then the
// command to exec in the new mount namespace. Binding a private /etc/docker
// first means nothing is created under the host's /etc/docker (which
// docker.io ships); /run/docker/plugins is what dockerd creates on start anyway.
const PRIVATE_PLUGIN_DIRS = [
  'set -e',
  'mkdir -p /etc/docker /run/docker/plugins',
  'mount --bind "$1" /etc/docker',
  'mount --bind "$2" /etc/docker/plugins',
  'mount --bind "$3" /run/docker/plugins',
  'shift 3',
  'exec "$@"',
].join('\n');

type Cli = (timeoutMs: number, args: readonly string[]) => Promise<{ stdout: string; stderr: string }>;

function cliEnv(dir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_CONFIG: path.join(dir, 'cli') };
  // -H must be the only thing that decides which engine we talk to.
  for (const k of ['DOCKER_HOST', 'DOCKER_CONTEXT', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH', 'DOCKER_API_VERSION']) delete env[k];
  return env;
}

export async function startDockerEngine(opts: DockerEngineOptions = {}): Promise<DockerEngine> {
  const engine = opts.engine ?? '20.10';
  const avail = await dockerAvailability(engine);
  if (!avail.ok) throw new Error(`Docker engine ${engine} is not available here: ${avail.reason ?? '?'}`);
  const { dockerd, userlandProxy } = binariesOf(engine);
  if (opts.netns !== undefined && !existsSync(netnsPath(opts.netns))) throw new Error(`no network namespace ${opts.netns} (${netnsPath(opts.netns)})`);
  if (opts.firewall && opts.netns === undefined) throw new Error("an engine's firewall is only for an engine in a network namespace of the test's");
  // Prefixes a command so that it runs in opts.netns; nsenter without
  // --fork execs it in place, so the pid we spawn stays the daemon's.
  const inNetns = (cmd: readonly string[]): string[] =>
    opts.netns === undefined ? [...cmd] : ['nsenter', `--net=${netnsPath(opts.netns)}`, '--', ...cmd];

  const dir = await makeTempDir('docker');
  const cdir = path.join(dir, 'containerd');
  const live: LiveEngine = {
    dir,
    containerdSock: path.join(cdir, 'containerd.sock'),
    containerdState: path.join(cdir, 'state'),
    // Containers' cgroups land under a name of our own, removable afterwards.
    cgroupParent: `/${path.basename(dir)}`,
    ...(opts.netns !== undefined ? { netns: opts.netns } : {}),
  };
  liveEngines.add(live);
  const host = `unix://${path.join(dir, 'docker.sock')}`;
  const cli: Cli = (timeoutMs, args) => run(DOCKER_CLI, ['-H', host, ...args], { env: cliEnv(dir), timeoutMs });
  const docker = (...args: string[]): Promise<{ stdout: string; stderr: string }> => cli(120_000, args);

  let stopping: Promise<void> | undefined;
  const unregister = registerCleanup(() => stop());
  const stop = (): Promise<void> => {
    stopping ??= teardown(live, cli).finally(() => unregister());
    return stopping;
  };

  try {
    await mkdir(cdir, { recursive: true });
    await mkdir(path.join(dir, 'cli'));
    await writeFile(path.join(cdir, 'config.toml'), containerdConfig(cdir));
    // Our own config file keeps a host /etc/docker/daemon.json out; 20.10
    // would otherwise write its identity to /etc/docker/key.json (there is no
    // flag for it, and 26.1 accepts and ignores the key).
    await writeFile(path.join(dir, 'daemon.json'), `${JSON.stringify({ 'deprecated-key-path': path.join(dir, 'key.json') })}\n`);
    const bridge = opts.bridge ? await createBridge(live) : undefined;

    const started = Date.now();
    const containerdCmd = ['containerd', '--config', path.join(cdir, 'config.toml')];
    let containerd: Spawned;
    if (opts.pluginDir !== undefined) {
      const etcDocker = path.join(dir, 'etc-docker');
      const runPlugins = path.join(dir, 'run-plugins');
      await mkdir(path.join(etcDocker, 'plugins'), { recursive: true });
      await mkdir(runPlugins);
      await mkdir(opts.pluginDir, { recursive: true });
      // containerd (and so its shims and runc) must share dockerd's mount
      // namespace: dockerd mounts each container's rootfs, runc uses it.
      const cmd = inNetns([
        'unshare', '--mount', '--propagation', 'private', '--',
        'sh', '-c', PRIVATE_PLUGIN_DIRS, 'ovn-docker-ns', etcDocker, opts.pluginDir, runPlugins, ...containerdCmd,
      ]);
      containerd = spawnLogged(cmd[0]!, cmd.slice(1), path.join(dir, 'containerd.log'), dir);
    } else {
      const cmd = inNetns(containerdCmd);
      containerd = spawnLogged(cmd[0]!, cmd.slice(1), path.join(dir, 'containerd.log'), dir);
    }
    live.containerd = containerd;
    const containerdPid = ownPid(containerd);
    if (containerdPid === undefined) throw new Error(`containerd did not start: ${containerd.exited() ?? '?'}`);
    await waitReady('containerd socket', containerd, path.join(dir, 'containerd.log'), async () => (existsSync(live.containerdSock) ? true : undefined), 30_000);

    const dockerdArgs = [
      '--config-file', path.join(dir, 'daemon.json'),
      '--data-root', path.join(dir, 'data'),
      '--exec-root', path.join(dir, 'exec'),
      '-H', host,
      '--pidfile', path.join(dir, 'docker.pid'),
      '--containerd', live.containerdSock,
      '--cgroup-parent', live.cgroupParent,
      // No host firewall or sysctl changes (unless the namespace is the test's own); both 20.10 and 26.1 know these flags.
      `--iptables=${opts.firewall ? 'true' : 'false'}`,
      '--ip6tables=false',
      `--ip-forward=${opts.firewall ? 'true' : 'false'}`,
      `--bridge=${bridge?.name ?? 'none'}`,
      ...(userlandProxy && isExecutable(userlandProxy) ? ['--userland-proxy-path', userlandProxy] : []),
    ];
    // dockerd must be in the namespace of the links it is handed (a driver's
    // Join interface): the same one as its containerd.
    const netArg = opts.netns !== undefined ? [`--net=${netnsPath(opts.netns)}`] : [];
    const dockerdCmd =
      opts.pluginDir !== undefined
        ? ['nsenter', `--mount=/proc/${containerdPid}/ns/mnt`, ...netArg, '--', dockerd, ...dockerdArgs]
        : inNetns([dockerd, ...dockerdArgs]);
    const startDockerd = async (): Promise<{ version: string; pid: number }> => {
      const daemon = spawnLogged(dockerdCmd[0]!, dockerdCmd.slice(1), path.join(dir, 'dockerd.log'), dir);
      live.dockerd = daemon;
      if (ownPid(daemon) === undefined) throw new Error(`dockerd did not start: ${daemon.exited() ?? '?'}`);
      const version = await waitReady('docker version', daemon, path.join(dir, 'dockerd.log'), async () => {
        const { stdout } = await cli(5000, ['version', '--format', '{{.Server.Version}}']);
        return stdout.trim() || undefined;
      }, 60_000);
      // nsenter (without --fork) execs dockerd in place: the pid we spawned is
      // dockerd's, and only it is ever signalled.
      const pid = Number.parseInt((await readFile(path.join(dir, 'docker.pid'), 'utf8')).trim(), 10);
      if (pid !== daemon.child.pid) throw new Error(`dockerd pidfile says ${pid}, spawned ${String(daemon.child.pid)}`);
      return { version, pid };
    };
    const { version, pid } = await startDockerd();
    const startupMs = Date.now() - started;
    await createGwBridge(live, cli);
    const result: DockerEngine = { engine, version, host, pid, containerdPid, dir, startupMs, ...(bridge ? { bridge } : {}), docker, stop, restartDaemon };
    async function restartDaemon(): Promise<void> {
      const old = ownPid(live.dockerd);
      if (old !== undefined) await stopPid(old, { graceMs: 20_000 });
      result.pid = (await startDockerd()).pid;
    }
    return result;
  } catch (e) {
    await stop().catch(() => undefined);
    throw e;
  }
}

// ---- stopping ---------------------------------------------------------------

async function teardown(live: LiveEngine, cli: Cli): Promise<void> {
  const shimSockets = shimSocketsSync(live.containerdState);
  const dockerdPid = ownPid(live.dockerd);
  // A container ignoring SIGTERM would hold dockerd's shutdown for its whole
  // stop timeout (10 s); the tests' containers have nothing to save. Short
  // timeouts: with its plugin gone, the engine retries it for ~15 s per call.
  if (dockerdPid !== undefined) {
    try {
      const ids = (await cli(10_000, ['ps', '-q'])).stdout.split(/\s+/).filter(Boolean);
      if (ids.length > 0) await cli(15_000, ['kill', ...ids]);
    } catch {
      // engine not answering: the signals below still stop it
    }
  }
  if (dockerdPid !== undefined) await stopPid(dockerdPid, { graceMs: 20_000 });
  // After a SIGKILLed dockerd the shims, and containers under them, stay.
  const leftovers = withDescendants(shimPids(live.containerdSock));
  for (const pid of leftovers) signal(pid, 'SIGKILL');
  for (const pid of leftovers) await stopPid(pid, { graceMs: 2000 });
  const containerdPid = ownPid(live.containerd);
  if (containerdPid !== undefined) await stopPid(containerdPid, { graceMs: 5000 });

  // In a private mount namespace everything went with the last process; in
  // the host one a killed dockerd leaves its data-root bind, overlays and netns files.
  for (const mp of mountsUnder(live.dir)) {
    await run('umount', [mp]).catch(() => run('umount', ['-l', mp]));
  }
  const stuck = mountsUnder(live.dir);
  // With a netns that is gone already, `ip -n` fails: its links went with it.
  if (live.bridge) await run('ip', ipIn(live.netns, ['link', 'del', live.bridge.name])).catch(() => undefined);
  if (live.gwBridge) await run('ip', ipIn(live.netns, ['link', 'del', live.gwBridge])).catch(() => undefined);
  removeCgroupsSync(live.cgroupParent);
  await Promise.all(shimSockets.map((socket) => rm(socket, { force: true })));
  liveEngines.delete(live);
  if (stuck.length > 0) throw new Error(`mounts left under ${live.dir}: ${stuck.join(', ')}`);
  await rm(live.dir, { recursive: true, force: true });
}

// ---- images -----------------------------------------------------------------

async function imageId(engine: DockerEngine, tag: string): Promise<string | undefined> {
  try {
    return (await engine.docker('image', 'inspect', '--format', '{{.Id}}', tag)).stdout.trim() || undefined;
  } catch {
    return undefined;
  }
}

/** True unless a little-endian 64-bit ELF without a PT_INTERP program header. */
function needsLoader(elf: Buffer): boolean {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) return true;
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (at + 4 > elf.length || elf.readUInt32LE(at) === 3) return true;
  }
  return false;
}

/**
 * No registry is reachable, so the test image is Debian's static busybox with
 * every applet linked into /bin, imported as a one-layer image. Returns the image id.
 */
export async function ensureBusyboxImage(engine: DockerEngine, tag = 'busybox:local'): Promise<string> {
  const existing = await imageId(engine, tag);
  if (existing) return existing;
  const work = await mkdtemp(path.join(engine.dir, 'busybox-'));
  try {
    const root = path.join(work, 'root');
    for (const d of ['bin', 'etc', 'tmp', 'proc', 'sys', 'dev', 'root']) await mkdir(path.join(root, d), { recursive: true });
    const busybox = await readFile(BUSYBOX);
    if (needsLoader(busybox)) throw new Error(`${BUSYBOX} is dynamically linked: the image needs Debian's busybox-static`);
    await writeFile(path.join(root, 'bin', 'busybox'), busybox, { mode: 0o755 });
    const applets = (await run(BUSYBOX, ['--list'])).stdout.split('\n').filter((a) => /^[\w.[\]-]+$/.test(a) && a !== 'busybox');
    for (const a of applets) await symlink('busybox', path.join(root, 'bin', a));
    const tarball = path.join(work, 'busybox.tar');
    await run('tar', ['-C', root, '-cf', tarball, '.']);
    await engine.docker('import', '--change', 'CMD ["sh"]', tarball, tag);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const id = await imageId(engine, tag);
  if (!id) throw new Error(`docker import of ${tag} left no image`);
  return id;
}
