/**
 * A private ovsdb-server on a fresh database file, reachable on a unix socket
 * and optionally on 127.0.0.1 TCP and SSL ports. It can be killed and started
 * again on the same file, socket and ports, which is what reconnect tests need.
 */
import { open, stat } from 'node:fs/promises';
import path from 'node:path';
import { ovnBinaries, type OvnBinaries } from './ovn-binaries.js';
import type { Pki } from './pki.js';
import {
  freeTcpPort,
  isolatedEnv,
  killPid,
  makeTempDir,
  registerCleanup,
  removeDir,
  run,
  startDaemon,
  stopPid,
  trackDir,
  waitFor,
} from './process.js';

export interface OvsdbServer {
  dir: string;
  dbPath: string;
  schemaPath: string;
  unixRemote: string;
  tcpRemote?: string;
  sslRemote?: string;
  pid: number;
  ctlPath: string;
  appctl(...args: string[]): Promise<string>;
  kill(signal?: NodeJS.Signals): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface OvsdbServerOptions {
  schema?: 'nb' | 'sb' | 'vswitch' | string;
  tcp?: boolean;
  ssl?: Pki;
}

/** 'nb', 'sb' or 'vswitch' of the chosen binaries (ovn-binaries.ts), else a schema file's path. */
export function schemaPathOf(schema: string, binaries: OvnBinaries = ovnBinaries()): string {
  return schema === 'nb' || schema === 'sb' || schema === 'vswitch' ? binaries.schema(schema) : schema;
}

/** How to (re)launch one ovsdb-server; shared with the cluster harness. */
export interface OvsdbLaunch {
  dir: string;
  dbPath: string;
  sockPath: string;
  ctlPath: string;
  /** Extra --remote and SSL arguments, identical on every restart. */
  extraArgs: string[];
  /** TCP ports the server must bind (client remotes and RAFT); checked before resolving. */
  ports: number[];
  /** Whose ovsdb-server runs; the chosen ones (ovn-binaries.ts) unless given. */
  binaries?: OvnBinaries;
}

export class PortTakenError extends Error {}

/**
 * Starts ovsdb-server and resolves once its unix socket answers and every
 * requested port is bound by this very process; a port someone else holds
 * is a PortTakenError, so the caller can pick new ports.
 */
export async function launchOvsdbServer(l: OvsdbLaunch): Promise<number> {
  const logPath = path.join(l.dir, 'ovsdb-server.log');
  const logStart = await stat(logPath).then((s) => s.size, () => 0);
  const server = (l.binaries ?? ovnBinaries()).command('ovsdb-server', [
    l.dbPath,
    `--remote=punix:${l.sockPath}`,
    ...l.extraArgs,
    `--unixctl=${l.ctlPath}`,
    `--log-file=${logPath}`,
    '--no-chdir',
    '-vconsole:off',
  ]);
  const pid = await startDaemon(server.cmd, server.args, { pidfile: path.join(l.dir, 'ovsdb-server.pid'), env: isolatedEnv(l.dir) });
  try {
    await waitFor(() => run('ovsdb-client', ['--timeout=2', 'list-dbs', `unix:${l.sockPath}`]).then(() => true), {
      what: `ovsdb-server ${l.sockPath} to answer list-dbs`,
      timeoutMs: 10_000,
      intervalMs: 20,
    });
    if (l.ports.length > 0) await waitForPorts(pid, l.ports, logPath, logStart);
  } catch (e) {
    await stopPid(pid, { graceMs: 1000 });
    throw e;
  }
  return pid;
}

/**
 * ovsdb-server logs nothing when an explicit port binds, and only logs (then
 * keeps retrying) when it cannot; so the positive proof is the socket table.
 */
async function waitForPorts(pid: number, ports: number[], logPath: string, logStart: number): Promise<void> {
  const outcome = await waitFor(
    async () => {
      const log = await readFrom(logPath, logStart);
      const taken = ports.find((p) => log.includes(`${p}:127.0.0.1: bind: `));
      if (taken !== undefined) return { taken };
      const { stdout } = await run('ss', ['-Hltnp']);
      const mine = stdout.split('\n').filter((line) => line.includes(`pid=${pid},`));
      return ports.every((p) => mine.some((line) => line.includes(`127.0.0.1:${p} `))) && { taken: undefined };
    },
    { what: `ovsdb-server pid ${pid} to listen on ${ports.join(', ')}`, timeoutMs: 10_000, intervalMs: 20 },
  );
  if (outcome.taken !== undefined) throw new PortTakenError(`port ${outcome.taken} is taken by another process`);
}

async function readFrom(file: string, offset: number): Promise<string> {
  const fh = await open(file, 'r').catch(() => undefined);
  if (!fh) return '';
  try {
    const { size } = await fh.stat();
    const buf = Buffer.alloc(Math.max(0, size - offset));
    await fh.read(buf, 0, buf.length, offset);
    return buf.toString('utf8');
  } finally {
    await fh.close();
  }
}

class PrivateOvsdbServer implements OvsdbServer {
  pid = 0;
  tcpRemote?: string;
  sslRemote?: string;
  private unregister: () => void = () => undefined;
  private stopped = false;

  constructor(
    readonly dir: string,
    readonly dbPath: string,
    readonly schemaPath: string,
    private readonly launch: OvsdbLaunch,
  ) {}

  get unixRemote(): string {
    return `unix:${this.launch.sockPath}`;
  }
  get ctlPath(): string {
    return this.launch.ctlPath;
  }

  async appctl(...args: string[]): Promise<string> {
    return (await run('ovs-appctl', ['-t', this.ctlPath, ...args], { env: isolatedEnv(this.dir) })).stdout;
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await killPid(this.pid, signal);
  }

  async start(): Promise<void> {
    this.pid = await launchOvsdbServer(this.launch);
    if (this.stopped) {
      this.stopped = false;
      this.unregister = registerCleanup(() => this.stop());
    }
  }

  async stop(): Promise<void> {
    this.unregister();
    this.stopped = true;
    if (this.pid) await stopPid(this.pid, { graceMs: 3000 });
    await removeDir(this.dir);
  }

  /** First start: ports are picked here, and picked again if someone beat us to one. */
  async firstStart(opts: OvsdbServerOptions): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const extraArgs: string[] = [];
      const ports: number[] = [];
      if (opts.tcp) {
        const port = await freeTcpPort();
        ports.push(port);
        extraArgs.push(`--remote=ptcp:${port}:127.0.0.1`);
        this.tcpRemote = `tcp:127.0.0.1:${port}`;
      }
      if (opts.ssl) {
        const port = await freeTcpPort();
        ports.push(port);
        extraArgs.push(
          `--remote=pssl:${port}:127.0.0.1`,
          `--private-key=${opts.ssl.serverKey}`,
          `--certificate=${opts.ssl.serverCert}`,
          `--ca-cert=${opts.ssl.caCert}`,
        );
        this.sslRemote = `ssl:127.0.0.1:${port}`;
      }
      this.launch.extraArgs = extraArgs;
      this.launch.ports = ports;
      try {
        this.pid = await launchOvsdbServer(this.launch);
        this.unregister = registerCleanup(() => this.stop());
        return;
      } catch (e) {
        if (!(e instanceof PortTakenError) || attempt >= 5) throw e;
      }
    }
  }
}

export async function startOvsdbServer(opts: OvsdbServerOptions = {}): Promise<OvsdbServer> {
  const binaries = ovnBinaries();
  const schemaPath = schemaPathOf(opts.schema ?? 'nb', binaries);
  const dir = await makeTempDir('ovsdb');
  trackDir(dir);
  try {
    const dbPath = path.join(dir, 'db.db');
    const create = binaries.command('ovsdb-tool', ['create', dbPath, schemaPath]);
    await run(create.cmd, create.args, { env: isolatedEnv(dir) });
    const server = new PrivateOvsdbServer(dir, dbPath, schemaPath, {
      dir,
      dbPath,
      sockPath: path.join(dir, 'db.sock'),
      ctlPath: path.join(dir, 'ovsdb-server.ctl'),
      extraArgs: [],
      ports: [],
      binaries,
    });
    await server.firstStart(opts);
    return server;
  } catch (e) {
    await removeDir(dir);
    throw e;
  }
}
