/**
 * A private RAFT cluster of the OVN Northbound database, every member an
 * ovsdb-server on 127.0.0.1 ports, so tests can watch leadership move and
 * members die and come back.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { hostBinaries } from './ovn-binaries.js';
import { launchOvsdbServer, PortTakenError, schemaPathOf, type OvsdbLaunch } from './ovsdb-server.js';
import {
  freeTcpPort,
  isolatedEnv,
  killPid,
  makeTempDir,
  registerCleanup,
  removeDir,
  run,
  stopPid,
  trackDir,
  waitFor,
} from './process.js';

const DB = 'OVN_Northbound';

export interface ClusterMember {
  index: number;
  dir: string;
  raftAddress: string;
  unixRemote: string;
  tcpRemote: string;
  pid: number;
  ctlPath: string;
  running: boolean;
}

export interface OvsdbCluster {
  members: ClusterMember[];
  remotes: string;
  leaderIndex(): Promise<number>;
  waitForLeader(opts?: { exclude?: number; timeoutMs?: number }): Promise<number>;
  transferLeadership(): Promise<number>;
  kill(index: number): Promise<void>;
  start(index: number): Promise<void>;
  stop(): Promise<void>;
}

interface RaftStatus {
  sid: string;
  member: boolean;
  role: string;
  term: number;
  /** Short server id of the leader as this member sees it, or undefined. */
  leader: string | undefined;
  /**
   * Short ids this member has a connection with, either direction: a joiner's
   * outgoing link to the founder stays listed as "->0000", so the founder
   * only shows up as incoming.
   */
  connectedTo: string[];
}

export function parseClusterStatus(text: string): RaftStatus {
  const field = (name: string): string => new RegExp(`^${name}: (.*)$`, 'm').exec(text)?.[1]?.trim() ?? '';
  const sid = field('Server ID').split(' ')[0] ?? '';
  const leader = field('Leader');
  return {
    sid,
    member: field('Status') === 'cluster member',
    role: field('Role'),
    term: Number(field('Term')),
    leader: leader === 'self' ? sid : leader === 'unknown' || leader === '' ? undefined : leader,
    connectedTo: [...field('Connections').matchAll(/(?:<-|->)([0-9a-f]+)/g)].map((m) => m[1] ?? ''),
  };
}

interface Member extends ClusterMember {
  launch: OvsdbLaunch;
}

class NbCluster implements OvsdbCluster {
  private unregister: () => void = () => undefined;

  constructor(
    readonly dir: string,
    readonly members: Member[],
  ) {}

  get remotes(): string {
    return this.members.map((m) => m.tcpRemote).join(',');
  }

  register(): void {
    this.unregister = registerCleanup(() => this.stop());
  }

  private async status(m: Member): Promise<RaftStatus> {
    const { stdout } = await run('ovs-appctl', ['-t', m.ctlPath, 'cluster/status', DB], { env: isolatedEnv(m.dir), timeoutMs: 5000 });
    return parseClusterStatus(stdout);
  }

  /**
   * The leader, provided every running member is a full member, agrees on it
   * and is connected to every other running member; undefined otherwise.
   */
  private async settledLeader(): Promise<number | undefined> {
    const running = this.members.filter((m) => m.running);
    const statuses = await Promise.all(running.map((m) => this.status(m)));
    const leaders = statuses.filter((s) => s.role === 'leader').sort((a, b) => b.term - a.term);
    const leader = leaders[0];
    if (!leader) return undefined;
    const ok = statuses.every(
      (s) =>
        s.member &&
        s.leader === leader.sid &&
        statuses.every((o) => o.sid === s.sid || s.connectedTo.includes(o.sid)),
    );
    if (!ok) return undefined;
    return running[statuses.indexOf(leader)]?.index;
  }

  async leaderIndex(): Promise<number> {
    const running = this.members.filter((m) => m.running);
    const statuses = await Promise.all(running.map((m) => this.status(m)));
    // After a partition an old leader may not know yet; the higher term wins.
    const best = statuses
      .map((s, i) => ({ s, m: running[i] }))
      .filter((x) => x.s.role === 'leader')
      .sort((a, b) => b.s.term - a.s.term)[0];
    if (!best?.m) throw new Error('no cluster member reports Role: leader');
    return best.m.index;
  }

  async waitForLeader(opts: { exclude?: number; timeoutMs?: number } = {}): Promise<number> {
    return waitFor(
      async () => {
        const leader = await this.settledLeader();
        return leader !== undefined && leader !== opts.exclude ? leader : undefined;
      },
      { what: `a settled cluster leader${opts.exclude !== undefined ? ` other than member ${opts.exclude}` : ''}`, timeoutMs: opts.timeoutMs ?? 20_000, intervalMs: 50 },
    );
  }

  async transferLeadership(): Promise<number> {
    const old = await this.waitForLeader();
    const m = this.members[old];
    if (!m) throw new Error(`no member ${old}`);
    const { stdout } = await run('ovs-appctl', ['-t', m.ctlPath, 'list-commands'], { env: isolatedEnv(m.dir) });
    if (stdout.includes('cluster/transfer-leadership')) {
      await run('ovs-appctl', ['-t', m.ctlPath, 'cluster/transfer-leadership', DB], { env: isolatedEnv(m.dir) });
      return this.waitForLeader({ exclude: old });
    }
    // OVS 3.1 has no transfer command. Killing the leader forces an election;
    // the restarted member could still win a later one, hence the loop.
    for (let attempt = 0; attempt < 5; attempt++) {
      await this.kill(old);
      await this.waitForLeader({ exclude: old });
      await this.start(old);
      const leader = await this.waitForLeader();
      if (leader !== old) return leader;
    }
    throw new Error(`leadership kept returning to member ${old}`);
  }

  async kill(index: number): Promise<void> {
    const m = this.member(index);
    await killPid(m.pid, 'SIGKILL');
    m.running = false;
  }

  async start(index: number): Promise<void> {
    const m = this.member(index);
    m.pid = await launchOvsdbServer(m.launch);
    m.running = true;
    await waitFor(
      async () => {
        const s = await this.status(m);
        return s.member && s.leader !== undefined;
      },
      { what: `member ${index} to rejoin and see a leader`, timeoutMs: 20_000 },
    );
  }

  async stop(): Promise<void> {
    this.unregister();
    await Promise.all(
      this.members.map(async (m) => {
        if (m.pid) await stopPid(m.pid, { graceMs: 3000 });
        m.running = false;
      }),
    );
    await removeDir(this.dir);
  }

  private member(index: number): Member {
    const m = this.members[index];
    if (!m) throw new Error(`no cluster member ${index}`);
    return m;
  }
}

async function distinctPorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freeTcpPort());
  return [...ports];
}

function prepareMember(root: string, index: number, raftPort: number, tcpPort: number): Member {
  const dir = path.join(root, `m${index}`);
  const sockPath = path.join(dir, 'db.sock');
  return {
    index,
    dir,
    raftAddress: `tcp:127.0.0.1:${raftPort}`,
    unixRemote: `unix:${sockPath}`,
    tcpRemote: `tcp:127.0.0.1:${tcpPort}`,
    pid: 0,
    ctlPath: path.join(dir, 'ovsdb-server.ctl'),
    running: false,
    launch: {
      dir,
      dbPath: path.join(dir, 'nb.db'),
      sockPath,
      ctlPath: path.join(dir, 'ovsdb-server.ctl'),
      extraArgs: [`--remote=ptcp:${tcpPort}:127.0.0.1`],
      ports: [raftPort, tcpPort],
      // The RAFT harness stays on the host's OVS (with ovsdb-tool's create-cluster
      // below): it tests the driver's client against RAFT, not OVN versions.
      binaries: hostBinaries,
    },
  };
}

export async function startNbCluster(size = 3): Promise<OvsdbCluster> {
  // The RAFT addresses are written into the db files, so a port someone else
  // took in the meantime means starting over with new ones.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startNbClusterOnce(size);
    } catch (e) {
      if (!(e instanceof PortTakenError) || attempt >= 3) throw e;
    }
  }
}

async function startNbClusterOnce(size: number): Promise<OvsdbCluster> {
  const root = await makeTempDir('cluster');
  trackDir(root);
  const ports = await distinctPorts(2 * size);
  const members: Member[] = [];
  for (let i = 0; i < size; i++) {
    const m = prepareMember(root, i, ports[2 * i] ?? 0, ports[2 * i + 1] ?? 0);
    await mkdir(m.dir);
    members.push(m);
  }
  const cluster = new NbCluster(root, members);
  cluster.register();
  try {
    const [first, ...rest] = members;
    if (!first) throw new Error('a cluster needs at least one member');
    await run('ovsdb-tool', ['create-cluster', first.launch.dbPath, schemaPathOf('nb', hostBinaries), first.raftAddress], { env: isolatedEnv(first.dir) });
    for (const m of rest) {
      await run('ovsdb-tool', ['join-cluster', m.launch.dbPath, DB, m.raftAddress, first.raftAddress], { env: isolatedEnv(m.dir) });
    }
    // The founder first: the others join through it.
    for (const m of members) {
      m.pid = await launchOvsdbServer(m.launch);
      m.running = true;
    }
    await cluster.waitForLeader({ timeoutMs: 30_000 });
    return cluster;
  } catch (e) {
    await cluster.stop();
    throw e;
  }
}
