/**
 * A replica update that cannot be applied must not leave the replica half
 * updated, nor move the transaction id the monitor resumes from: the client
 * drops its monitor and takes a full snapshot. A TCP proxy between the client
 * and a real clustered NB ovsdb-server (so that monitor_cond_since really
 * resumes) corrupts one row of one message in flight.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import t, { type Test } from 'tap';
import { startNbCluster, type OvsdbCluster } from '../harness/cluster.js';
import { waitFor } from '../harness/process.js';
import { JsonStreamFramer } from '../../src/ovsdb/framer.js';
import { parseSchema } from '../../src/ovsdb/schema.js';
import {
  CacheInconsistentError,
  OvsdbClient,
  Replica,
  type Logger,
  type OvsdbClientOptions,
  type Row,
  type RowChange,
} from '../../src/ovsdb/index.js';

const ZERO_UUID = '00000000-0000-0000-0000-000000000000';
const TABLES = ['Address_Set', 'Logical_Switch'];
const MONITORS = new Set(['monitor', 'monitor_cond', 'monitor_cond_since']);

interface Message {
  id?: unknown;
  method?: string;
  params?: unknown[];
  result?: unknown;
  error?: unknown;
}

interface Sent {
  conn: number;
  method: string;
  params: unknown[];
}

/** Forwards OVSDB messages both ways, records the client's requests and lets a test rewrite the server's messages. */
class RewritingProxy {
  readonly sent: Sent[] = [];
  connections = 0;
  refusing = false;
  /** Answer monitor_cond_since with "unknown method", as a server without it would. */
  refuseSince = false;
  rewrite: ((message: Message) => Message) | undefined;
  private readonly sockets = new Set<net.Socket>();
  private readonly server = net.createServer((socket) => this.accept(socket));

  constructor(private readonly upstreamPort: number) {}

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `tcp:127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
  }

  cut(): void {
    for (const s of this.sockets) s.destroy();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private accept(client: net.Socket): void {
    if (this.refusing) {
      client.destroy();
      return;
    }
    const conn = ++this.connections;
    const upstream = net.connect(this.upstreamPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        this.sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    const fromClient = new JsonStreamFramer();
    client.on('data', (chunk: Buffer) => {
      for (const m of fromClient.push(chunk) as Message[]) {
        if (typeof m.method === 'string' && m.id !== null && m.id !== undefined) {
          this.sent.push({ conn, method: m.method, params: m.params ?? [] });
          if (this.refuseSince && m.method === 'monitor_cond_since') {
            client.write(JSON.stringify({ id: m.id, result: null, error: 'unknown method' }));
            continue;
          }
        }
        upstream.write(JSON.stringify(m));
      }
    });
    const fromServer = new JsonStreamFramer();
    upstream.on('data', (chunk: Buffer) => {
      for (const m of fromServer.push(chunk) as Message[]) {
        client.write(JSON.stringify(this.rewrite ? this.rewrite(m) : m));
      }
    });
  }
}

type TableUpdates = Record<string, Record<string, Record<string, Record<string, unknown> | null>>>;

/**
 * Gives the row named `name` of `table` a name of the wrong type, and moves
 * it last so that every other row of the update comes before it. Returns its
 * uuid, or undefined when the update does not hold that row.
 */
function corruptRow(updates: TableUpdates, table: string, name: string): string | undefined {
  const rows = updates[table];
  const bad = Object.entries(rows ?? {}).find(([, u]) => Object.values(u).some((body) => body?.name === name));
  if (!rows || !bad) return undefined;
  const [uuid, update] = bad;
  for (const body of Object.values(update)) if (body) body.name = 42;
  const others = Object.entries(updates).filter(([n]) => n !== table);
  const reordered: TableUpdates = Object.fromEntries(others);
  reordered[table] = Object.fromEntries([...Object.entries(rows).filter(([u]) => u !== uuid), [uuid, update]]);
  for (const key of Object.keys(updates)) delete updates[key];
  Object.assign(updates, reordered);
  return uuid;
}

interface LogLine {
  level: string;
  obj: object;
  msg: string | undefined;
}

function recordingLogger(lines: LogLine[]): Logger {
  const at = (level: string) => (obj: object, msg?: string) => lines.push({ level, obj, msg });
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

function options(remote: string, extra: Partial<OvsdbClientOptions> = {}): OvsdbClientOptions {
  return {
    remote,
    database: 'OVN_Northbound',
    tables: TABLES,
    indexes: { Logical_Switch: { columns: ['name'] } },
    requestTimeoutMs: 10_000,
    probeIntervalMs: 0,
    backoff: { initialMs: 50, maxMs: 200 },
    ...extra,
  };
}

function canonical(row: Row): string {
  const norm = (v: unknown): unknown =>
    v instanceof Map ? [...v].map((e) => JSON.stringify(e)).sort() : Array.isArray(v) ? [...v].map(String).sort() : v;
  return JSON.stringify(Object.keys(row).sort().map((k) => [k, norm(row[k])]));
}

function contents(replica: Replica): Map<string, string> {
  const out = new Map<string, string>();
  for (const table of TABLES) for (const row of replica.rows(table)) out.set(`${table} ${row._uuid}`, canonical(row));
  return out;
}

function sameContents(a: Replica, b: Replica): boolean {
  const x = contents(a);
  const y = contents(b);
  return x.size === y.size && [...x].every(([k, v]) => y.get(k) === v);
}

/** Replays change events onto the first content: what a listener would believe. */
function replay(base: Map<string, string>, changes: RowChange[]): Map<string, string> {
  const out = new Map(base);
  for (const ch of changes) {
    const key = `${ch.table} ${ch.uuid}`;
    if (ch.new) out.set(key, canonical(ch.new));
    else out.delete(key);
  }
  return out;
}

function namesOf(changes: RowChange[], kind: 'insert' | 'delete' | 'modify'): string[] {
  return changes
    .filter((ch) => (kind === 'insert' ? !ch.old : kind === 'delete' ? !ch.new : ch.old && ch.new))
    .map((ch) => String((ch.new ?? ch.old)?.name));
}

let cluster: OvsdbCluster;
let writer: OvsdbClient;
const closers: (() => Promise<unknown>)[] = [];

t.before(async () => {
  // One RAFT member: a clustered database keeps the history monitor_cond_since resumes from.
  cluster = await startNbCluster(1);
  writer = await OvsdbClient.connect(options(cluster.members[0]!.unixRemote), 20_000);
});
t.teardown(async () => {
  for (const close of closers.reverse()) await close();
  await writer.close();
  await cluster.stop();
});

async function startClient(proxySetup: (p: RewritingProxy) => void = () => undefined) {
  const port = Number(cluster.members[0]!.tcpRemote.split(':').pop());
  const proxy = new RewritingProxy(port);
  proxySetup(proxy);
  const remote = await proxy.listen();
  closers.push(() => proxy.close());
  const logs: LogLine[] = [];
  const client = await OvsdbClient.connect(options(remote, { logger: recordingLogger(logs) }), 20_000);
  closers.push(() => client.close());
  return { proxy, client, logs };
}

/** A client behind a proxy, seeded rows in its replica, and a record of its change events from now on. */
async function scenario(prefix: string, proxySetup?: (p: RewritingProxy) => void) {
  await seed(prefix);
  const started = await startClient(proxySetup);
  const { client } = started;
  await waitFor(() => client.replica.findOne('Logical_Switch', 'name', `${prefix}-gone`), { what: 'the seed rows' });
  const before = contents(client.replica);
  const changes: RowChange[] = [];
  client.on('change', (ch) => changes.push(...ch));
  return { ...started, before, changes };
}

/** What every bad update must end with: logged by name, and events that add up to the new content. */
function checkAftermath(
  t: Test,
  s: Awaited<ReturnType<typeof scenario>>,
  prefix: string,
  badUuid: string | undefined,
): void {
  const error = s.logs.find((l) => l.level === 'error');
  t.ok(error, 'the failed apply is logged as an error');
  t.match(JSON.stringify(error), new RegExp(`Logical_Switch ${badUuid ?? 'x'}`), 'the error names the table and row');
  t.strictSame(
    [...replay(s.before, s.changes)].sort(),
    [...contents(s.client.replica)].sort(),
    'the change events take a listener from the old content to the new one',
  );
  t.strictSame(namesOf(s.changes, 'insert').sort(), [`${prefix}-a`, `${prefix}-b`], 'each insert reported once');
  t.strictSame(namesOf(s.changes, 'delete'), [`${prefix}-gone`], 'the delete reported once');
  t.ok(namesOf(s.changes, 'modify').includes(`${prefix}-keep`), 'the modify reported');
}

async function seed(prefix: string): Promise<void> {
  await writer.transaction((tx) => {
    tx.insert('Logical_Switch', { name: `${prefix}-keep` });
    tx.insert('Logical_Switch', { name: `${prefix}-gone` });
    tx.insert('Address_Set', { name: `${prefix}_set`, addresses: ['10.0.0.1'] });
  });
}

/** One transaction touching both tables: a modify, a delete, an address set mutation, two inserts. */
function buildChange(tx: Parameters<Parameters<OvsdbClient['transaction']>[0]>[0], prefix: string): void {
  tx.update('Logical_Switch', [['name', '==', `${prefix}-keep`]], { other_config: new Map([['changed', 'yes']]) });
  tx.delete('Logical_Switch', [['name', '==', `${prefix}-gone`]]);
  tx.mutate('Address_Set', [['name', '==', `${prefix}_set`]], [['addresses', 'insert', ['10.0.0.2']]]);
  tx.insert('Logical_Switch', { name: `${prefix}-a` });
  tx.insert('Logical_Switch', { name: `${prefix}-b` });
}

/** The first monitor request of the NB data (not of _Server) sent after `index`. */
function firstMonitorAfter(proxy: RewritingProxy, index: number): Sent | undefined {
  return proxy.sent.slice(index).find((s) => MONITORS.has(s.method) && s.params[0] === 'OVN_Northbound');
}

/**
 * The client's own transaction, whose update notification is corrupted:
 * update3 normally, update2 when the proxy hides monitor_cond_since.
 */
async function ownTransactionCorrupted(t: Test, refuseSince: boolean): Promise<void> {
  const prefix = refuseSince ? 'u2' : 'u3';
  const notification = refuseSince ? 'update2' : 'update3';
  const s = await scenario(prefix, (p) => (p.refuseSince = refuseSince));
  const { proxy, client } = s;

  let badUuid: string | undefined;
  let badTxnId: unknown;
  let sentBefore = 0;
  proxy.rewrite = (m) => {
    if (m.method !== notification || !m.params) return m;
    const updates = (refuseSince ? m.params[1] : m.params[2]) as TableUpdates;
    badUuid = corruptRow(updates, 'Logical_Switch', `${prefix}-b`);
    if (badUuid) {
      badTxnId = m.params[1];
      sentBefore = proxy.sent.length;
      proxy.rewrite = undefined;
    }
    return m;
  };
  const waiter = client.replica.waitFor(() => client.replica.findOne('Logical_Switch', 'name', `${prefix}-b`), {
    timeoutMs: 15_000,
    what: `${prefix}-b in the replica`,
  });

  let builds = 0;
  await client.transaction(
    (tx, replica) => {
      builds++;
      // Idempotent, in case the transaction is re-run after a lost connection.
      if (replica.findOne('Logical_Switch', 'name', `${prefix}-b`)) return;
      buildChange(tx, prefix);
    },
    { timeoutMs: 15_000 },
  );
  t.ok(badUuid, `the proxy corrupted the ${notification} notification`);
  t.equal(builds, 1, 'the transaction was neither failed nor re-run by the resync');
  t.ok(client.replica.findOne('Logical_Switch', 'name', `${prefix}-b`), 'the replica reflects the transaction when it resolves');
  t.ok(await waiter, 'a waiter registered before the bad update is served after the resync');

  await waitFor(() => sameContents(client.replica, writer.replica), { what: 'the replica to equal a direct client', timeoutMs: 15_000 });
  t.ok(sameContents(client.replica, writer.replica), 'the replica converged to the server content');
  t.notOk(client.replica.findOne('Logical_Switch', 'name', `${prefix}-gone`), 'the deleted switch is gone');
  const keep = client.replica.findOne('Logical_Switch', 'name', `${prefix}-keep`);
  t.equal((keep?.other_config as Map<string, string> | undefined)?.get('changed'), 'yes', 'the modified switch is modified');

  const resync = firstMonitorAfter(proxy, sentBefore);
  t.ok(resync, 'the client monitored again after the bad update');
  if (refuseSince) {
    t.equal(resync?.method, 'monitor_cond', 'a fresh monitor_cond, which has no resume');
  } else {
    t.equal(resync?.params[3], ZERO_UUID, 'the new monitor asks for a full snapshot');
    t.not(resync?.params[3], badTxnId, 'it does not resume past the bad update');
  }
  checkAftermath(t, s, prefix, badUuid);

  // The resync left a valid position: a reconnect resumes from it and stays in sync.
  if (!refuseSince) {
    const ready = new Promise<{ resumed: boolean }>((resolve) => client.once('ready', resolve));
    proxy.cut();
    t.equal((await ready).resumed, true, 'a later reconnect resumes');
    await writer.transaction((tx) => void tx.insert('Logical_Switch', { name: `${prefix}-later` }));
    await waitFor(() => sameContents(client.replica, writer.replica), { what: 'the replica to follow later updates' });
  }
}

t.test('a bad update3 notification: nothing of it applied, full snapshot, no resume past it', async (t) => {
  await ownTransactionCorrupted(t, false);
});

t.test('a bad update2 notification (monitor_cond): nothing of it applied, monitor again', async (t) => {
  await ownTransactionCorrupted(t, true);
});

t.test('a bad resumed monitor_cond_since reply: nothing of it applied, the next monitor takes a full snapshot', async (t) => {
  const prefix = 'rs';
  const s = await scenario(prefix);
  const { proxy, client } = s;

  // The database changes while the client is away; its reconnect resumes and gets the change in the reply.
  proxy.refusing = true;
  const disconnected = new Promise((resolve) => client.once('disconnected', resolve));
  proxy.cut();
  await disconnected;
  await writer.transaction((tx) => buildChange(tx, prefix));

  let badUuid: string | undefined;
  let badTxnId: unknown;
  let sentBefore = 0;
  proxy.rewrite = (m) => {
    const r = m.result;
    if (!Array.isArray(r) || r.length !== 3 || r[0] !== true) return m;
    badUuid = corruptRow(r[2] as TableUpdates, 'Logical_Switch', `${prefix}-b`);
    if (badUuid) {
      badTxnId = r[1];
      sentBefore = proxy.sent.length;
      proxy.rewrite = undefined;
    }
    return m;
  };
  const sentAtReconnect = proxy.sent.length;
  proxy.refusing = false;

  await waitFor(() => sameContents(client.replica, writer.replica), { what: 'the replica to equal a direct client', timeoutMs: 15_000 });
  t.ok(badUuid, 'the proxy corrupted the resumed reply');
  const resumedFrom = firstMonitorAfter(proxy, sentAtReconnect);
  t.equal(resumedFrom?.method, 'monitor_cond_since', 'the reconnect resumed');
  t.not(resumedFrom?.params[3], ZERO_UUID, 'the corrupted reply answered a resume');
  const next = firstMonitorAfter(proxy, sentBefore);
  t.equal(next?.params[3], ZERO_UUID, 'the next monitor asks for a full snapshot');
  t.not(next?.params[3], badTxnId, 'it does not resume past the bad reply');
  t.ok(sameContents(client.replica, writer.replica), 'the replica converged to the server content');
  checkAftermath(t, s, prefix, badUuid);
});

t.test('Replica: a batch with one bad row leaves rows, indexes, events and waiters untouched', async (t) => {
  const schema = parseSchema(JSON.parse(readFileSync('/usr/share/ovn/ovn-nb.ovsschema', 'utf8')) as unknown);
  const replica = new Replica(schema, TABLES, { Logical_Switch: { columns: ['name'] } });
  const [u1, u2, u3] = ['10000000-0000-0000-0000-000000000001', '10000000-0000-0000-0000-000000000002', '10000000-0000-0000-0000-000000000003'];
  replica.applyUpdates2({ Logical_Switch: { [u1]: { initial: { name: 'one' } }, [u2]: { initial: { name: 'two' } } } });
  const before = contents(replica);
  const seqno = replica.seqno;
  const events: RowChange[][] = [];
  replica.on('change', (ch) => events.push(ch));
  let woken = 0;
  const waiter = replica.waitFor(() => (++woken > 1 ? true : undefined), { timeoutMs: 5000, what: 'a commit' });

  const bad2 = {
    Address_Set: { [u3]: { insert: { name: 'set' } } },
    Logical_Switch: { [u1]: { modify: { name: 'renamed' } }, [u2]: { delete: null }, [u3]: { modify: { name: 'x' } } },
  };
  t.throws(() => replica.applyUpdates2(bad2), CacheInconsistentError, 'update2: modify of a row it does not have');
  const bad1 = {
    Logical_Switch: { [u1]: { new: { name: 'renamed' } }, [u2]: {}, [u3]: { new: { name: 7 } } },
  };
  t.throws(() => replica.applyUpdates1(bad1), CacheInconsistentError, 'update: a value of the wrong type');
  t.strictSame([...contents(replica)], [...before], 'no row changed');
  t.equal(replica.findOne('Logical_Switch', 'name', 'one')?._uuid, u1, 'the index still finds the old name');
  t.strictSame(replica.findBy('Logical_Switch', 'name', 'renamed'), [], 'and not the new one');
  t.equal(replica.count('Address_Set'), 0, 'nothing inserted');
  t.equal(replica.seqno, seqno, 'no commit counted');
  t.strictSame(events, [], 'no change event');

  replica.applyUpdates2({ Logical_Switch: { [u1]: { modify: { name: 'renamed' } }, [u2]: { delete: null } } });
  t.equal(await waiter, true, 'the waiter is still there for the next good update');
  t.equal(replica.findOne('Logical_Switch', 'name', 'renamed')?._uuid, u1, 'which applies');
  t.equal(replica.count('Logical_Switch'), 1, 'with its delete');
});
