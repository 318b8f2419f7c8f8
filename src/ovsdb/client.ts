/**
 * OVSDB client session: keeps one connection to a database (the leader of a
 * cluster by default), a monitored replica of the tables the caller names,
 * and transactions that can be retried on conflict.
 *
 * Session steps, re-run after every disconnect (like lib/ovsdb-cs.c):
 *   connect -> list_dbs -> get_schema -> watch _Server.Database (leader,
 *   quorum, staleness) -> set_db_change_aware -> monitor_cond_since
 *   (falling back to monitor_cond, then monitor) -> ready.
 * Reconnection uses exponential backoff with full jitter over the shuffled
 * remotes. A transaction in flight when the connection drops fails with
 * ConnectionClosedError (outcomeUnknown = true), or is re-run by
 * `transaction()` against the resynced replica. Every connection is probed
 * with echo, and `transaction()` gives up after a budget (waiting for a
 * session included); once one has, the others fail fast until the database
 * answers again, each hurrying the next connection attempt.
 */
import { EventEmitter } from 'node:events';
import { CacheInconsistentError, ConnectionClosedError, OvsdbError, RpcError } from './errors.js';
import { silentLogger, type Logger } from './logger.js';
import { Reconnector } from './reconnect.js';
import type { Remote } from './remote.js';
import { Replica, type IndexSpec, type RowChange } from './replica.js';
import { JsonRpcConnection, type RequestOptions } from './rpc.js';
import { parseSchema } from './schema.js';
import { readServerRow, rejectReason, type ServerDbStatus } from './server-status.js';
import { Transaction, type TransactionResult } from './transaction.js';
import { TransactionRunner, type TransactionOptions } from './transaction-runner.js';
import { openTransport, type TlsFiles } from './transport.js';
import type { DatabaseSchema } from './types.js';

export interface OvsdbClientOptions {
  /** OVSDB remote(s): `unix:PATH`, `tcp:HOST:PORT`, `ssl:HOST:PORT`, comma-separated for a cluster. */
  remote: string;
  database: string;
  /** Tables to replicate (all their columns). */
  tables: string[];
  indexes?: Record<string, IndexSpec>;
  tls?: TlsFiles;
  /** Only use the cluster leader (default true: this client writes). */
  leaderOnly?: boolean;
  requestTimeoutMs?: number;
  /**
   * How long transaction() may take in all, waiting for a session and every
   * re-run included (default 10 s): its caller answers someone (Docker waits
   * for a plugin without a timeout), and a RAFT leader change is over well
   * within it.
   */
  transactionTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Keepalive probe on every connection (a stopped server keeps a unix socket open too); 0 disables. */
  probeIntervalMs?: number;
  backoff?: { initialMs: number; maxMs: number };
  logger?: Logger;
}

export interface ClientEvents {
  /** A connection is up and the replica is in sync. */
  ready: [info: { remote: string; resumed: boolean; status: ServerDbStatus | undefined }];
  disconnected: [error: Error | undefined];
  /** Row changes, one batch per update message (also for a resync). */
  change: [changes: RowChange[]];
}

const ZERO_UUID = '00000000-0000-0000-0000-000000000000';
const DATA_MONITOR = 'data';
const SERVER_MONITOR = 'server';

type MonitorMethod = 'monitor_cond_since' | 'monitor_cond' | 'monitor';

const RESYNC = Symbol('resync');

interface PendingResync {
  /** Resolves once the replica is in sync again, or the connection is gone. */
  done: Promise<void>;
  finish(): void;
  /** Another update failed while this resync ran: run it once more. */
  again: boolean;
}

export class OvsdbClient extends EventEmitter<ClientEvents> {
  private readonly reconnect: Reconnector;
  private readonly log: Logger;
  private readonly leaderOnly: boolean;
  private readonly requestTimeoutMs: number;
  private readonly runner: TransactionRunner;
  private conn: JsonRpcConnection | undefined;
  private ready = false;
  private replicaValue: Replica | undefined;
  private lastTxnId = ZERO_UUID;
  private minIndex = 0;
  private lastError: Error | undefined;
  private running: Promise<void> | undefined;
  /** Updates that arrived before their monitor's reply was applied. */
  private buffered = new Map<string, unknown[][]>();
  /** Id of the current data monitor; a resync on the same connection takes a new one. */
  private dataMonitorId = DATA_MONITOR;
  private resyncs = 0;
  /** Set when the replica may not match lastTxnId: the next monitor must take a full snapshot. */
  private needFullResync = false;
  /** A resync on the current connection, requested or running. */
  private pendingResync: PendingResync | undefined;
  private wakeResync: (() => void) | undefined;
  private monitorMethod: MonitorMethod = 'monitor_cond_since';
  /** Replica of our database's row in _Server (leader, quorum, Raft index). */
  private serverReplica: Replica | undefined;

  constructor(private readonly options: OvsdbClientOptions) {
    super();
    this.setMaxListeners(0);
    this.reconnect = new Reconnector(options.remote, options.backoff);
    this.log = options.logger ?? silentLogger;
    this.leaderOnly = options.leaderOnly ?? true;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    this.runner = new TransactionRunner(
      {
        isReady: () => this.ready,
        isClosed: () => this.closed,
        lastError: () => this.lastError,
        whenReady: (timeoutMs) => this.whenReady(timeoutMs),
        hurry: () => this.reconnect.hurry(),
        replica: () => this.replica,
        newTransaction: () => this.newTransaction(),
        transact: (tx, options) => this.transact(tx, options),
      },
      {
        database: options.database,
        remote: options.remote,
        remoteCount: this.reconnect.remotes.length,
        timeoutMs: options.transactionTimeoutMs ?? 10_000,
        log: this.log,
      },
    );
  }

  /** Create a client and wait until its replica is in sync. */
  static async connect(options: OvsdbClientOptions, timeoutMs = 30_000): Promise<OvsdbClient> {
    const client = new OvsdbClient(options);
    client.start();
    try {
      await client.whenReady(timeoutMs);
    } catch (err) {
      await client.close();
      throw err;
    }
    return client;
  }

  start(): void {
    if (!this.running) this.running = this.reconnect.run((remote, name) => this.attempt(remote, name));
  }

  get isReady(): boolean {
    return this.ready;
  }

  /** The remote of the current connection, if any. */
  get currentRemote(): string | undefined {
    return this.conn?.remote;
  }

  get replica(): Replica {
    if (!this.replicaValue) throw new OvsdbError('the replica is not available before the first sync');
    return this.replicaValue;
  }

  get schema(): DatabaseSchema {
    return this.replica.schema;
  }

  /** Resolve once the session is in sync; reject after `timeoutMs`. */
  whenReady(timeoutMs = this.requestTimeoutMs): Promise<void> {
    if (this.ready) return Promise.resolve();
    if (this.closed) return Promise.reject(new OvsdbError('client is closed'));
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('ready', onReady);
        const cause = this.lastError ? `: last error: ${this.lastError.message}` : '';
        reject(
          new ConnectionClosedError(
            `no usable OVSDB server for ${this.options.database} at ${this.options.remote} within ${timeoutMs} ms${cause}`,
            false,
            { cause: this.lastError },
          ),
        );
      }, timeoutMs);
      const onReady = () => {
        clearTimeout(timer);
        resolve();
      };
      this.once('ready', onReady);
    });
  }

  /** A raw JSON-RPC call on the current connection (waits for the session to be ready). */
  async call(method: string, params: unknown[], options: RequestOptions = {}): Promise<unknown> {
    const conn = await this.connection(options.timeoutMs);
    return conn.request(method, params, options);
  }

  async listDbs(): Promise<string[]> {
    const dbs = await this.call('list_dbs', []);
    return Array.isArray(dbs) ? dbs.filter((d): d is string => typeof d === 'string') : [];
  }

  async echo(payload: unknown[] = []): Promise<unknown> {
    return this.call('echo', payload);
  }

  newTransaction(): Transaction {
    return new Transaction(this.schema, this.options.database);
  }

  /** Send a built transaction once. */
  async transact(tx: Transaction, options: { timeoutMs?: number } = {}): Promise<TransactionResult> {
    const conn = await this.connection(options.timeoutMs);
    const started = Date.now();
    const result = await conn.request('transact', [tx.database, ...tx.operations], {
      timeoutMs: options.timeoutMs ?? this.requestTimeoutMs,
    });
    this.runner.answered();
    // The update for this transaction may have been dropped for a resync; the reply must not overtake it.
    while (this.pendingResync) await this.pendingResync.done;
    this.log.debug({ ops: tx.operations.length, ms: Date.now() - started }, 'transact');
    return tx.parseResult(result);
  }

  /**
   * Build a transaction from the replica and commit it, re-running `build`
   * when a guard (verify/guardAbsent) found the data changed or the
   * connection dropped. `build` must derive its operations from the replica
   * it is given, so that re-running it is safe (idempotent). Gives up once
   * `timeoutMs` (all attempts together) is over, with an error that names
   * the database, its remote and what to check.
   */
  transaction<T>(
    build: (tx: Transaction, replica: Replica) => T,
    options: TransactionOptions = {},
  ): Promise<{ value: T; result: TransactionResult | undefined }> {
    return this.runner.run(build, options);
  }

  async close(): Promise<void> {
    this.reconnect.stop();
    this.conn?.close(new ConnectionClosedError('client closed', true));
    await this.running?.catch(() => undefined);
    this.removeAllListeners('ready');
  }

  private async connection(timeoutMs?: number): Promise<JsonRpcConnection> {
    await this.whenReady(timeoutMs ?? this.requestTimeoutMs);
    const conn = this.conn;
    if (!conn || !conn.isOpen) throw new ConnectionClosedError('connection lost', false);
    return conn;
  }

  private get closed(): boolean {
    return this.reconnect.stopped;
  }

  /** One connection attempt, for the reconnect loop: whether it got in sync; a failure is kept as lastError. */
  private async attempt(remote: Remote, name: string): Promise<boolean> {
    try {
      return await this.session(remote, name);
    } catch (err) {
      this.lastError = err as Error;
      if (!this.closed) this.log.warn({ remote: name, err: (err as Error).message }, 'OVSDB session failed');
      return false;
    }
  }

  /** One connection's lifetime. Returns whether it got in sync before it ended. */
  private async session(remote: Remote, name: string): Promise<boolean> {
    const socket = await openTransport(remote, {
      tls: this.options.tls,
      timeoutMs: this.options.connectTimeoutMs ?? 10_000,
    });
    const conn = new JsonRpcConnection(socket, {
      remote: name,
      requestTimeoutMs: this.requestTimeoutMs,
      probeIntervalMs: this.options.probeIntervalMs ?? 5000,
      logger: this.log,
    });
    const closed = new Promise<Error | undefined>((resolve) => conn.once('close', resolve));
    this.buffered = new Map([[SERVER_MONITOR, []]]);
    const live = new Set<string>();
    conn.on('notification', (method, params) => {
      try {
        this.onNotification(conn, method, params, live);
      } catch (err) {
        this.log.error({ remote: name, method, err: (err as Error).message }, 'cannot handle OVSDB notification; reconnecting');
        conn.close(err as Error);
      }
    });
    this.conn = conn;
    try {
      const dbs = await conn.request('list_dbs', []);
      if (!Array.isArray(dbs) || !dbs.includes(this.options.database)) {
        throw new OvsdbError(`${name} does not serve database ${this.options.database} (it has ${JSON.stringify(dbs)})`);
      }
      const schema = parseSchema(await conn.request('get_schema', [this.options.database]));
      let status: ServerDbStatus | undefined;
      if (dbs.includes('_Server')) {
        status = await this.watchServer(conn, live);
      }
      await conn.request('set_db_change_aware', [true]).catch((err: unknown) => {
        if (!(err instanceof RpcError)) throw err;
      });
      const resumed = await this.monitorData(conn, schema, live);
      this.ready = true;
      this.lastError = undefined;
      this.runner.answered();
      this.log.info({ remote: name, resumed, model: status?.model }, 'OVSDB session ready');
      this.emit('ready', { remote: name, resumed, status });
      for (;;) {
        const error = await Promise.race([closed, this.resyncRequested()]);
        if (error === RESYNC) {
          await this.resyncData(conn, schema, live).catch((err: unknown) => {
            this.lastError = err as Error;
            throw err;
          });
          continue;
        }
        if (!this.closed) {
          this.log.warn({ remote: name, err: error?.message }, 'OVSDB connection lost; reconnecting');
        }
        this.lastError = error;
        return true;
      }
    } finally {
      conn.close();
      this.conn = undefined;
      this.wakeResync = undefined;
      // What is left of a resync happens with the next connection's full snapshot.
      this.pendingResync?.finish();
      this.pendingResync = undefined;
      if (this.ready) {
        this.ready = false;
        this.emit('disconnected', this.lastError);
      }
    }
  }

  private onNotification(conn: JsonRpcConnection, method: string, params: unknown[], live: Set<string>): void {
    if (method === 'monitor_canceled') {
      conn.close(new ConnectionClosedError('server canceled the monitor (database changed); resyncing', true));
      return;
    }
    if (method !== 'update' && method !== 'update2' && method !== 'update3') return;
    const id = params[0];
    if (typeof id !== 'string') return;
    if (!live.has(id)) {
      this.buffered.get(id)?.push([method, ...params]);
      return;
    }
    this.applyNotification(conn, id, method, params, live);
  }

  private applyNotification(
    conn: JsonRpcConnection,
    id: string,
    method: string,
    params: unknown[],
    live: Set<string>,
  ): void {
    if (id === SERVER_MONITOR) {
      this.serverReplica?.applyUpdates2(params[1]);
      try {
        this.checkServer(conn);
      } catch {
        // checkServer closed the connection with the reason; the session moves on.
      }
      return;
    }
    if (id !== this.dataMonitorId || !this.replicaValue) return;
    let changes: RowChange[];
    let txnId: string | undefined;
    try {
      if (method === 'update3') {
        // Without its id, an applied update3 would be applied again by the next resume.
        if (typeof params[1] !== 'string') throw new CacheInconsistentError('update3 without a transaction id');
        txnId = params[1];
        changes = this.replicaValue.applyUpdates2(params[2]);
      } else if (method === 'update2') {
        changes = this.replicaValue.applyUpdates2(params[1]);
      } else {
        changes = this.replicaValue.applyUpdates1(params[1]);
      }
    } catch (err) {
      this.log.error(
        { remote: conn.remote, method, err: (err as Error).message },
        'cannot apply OVSDB update; dropping the monitor for a full resync',
      );
      this.requestResync(live);
      return;
    }
    if (txnId !== undefined) this.lastTxnId = txnId;
    this.emitChanges(changes);
  }

  /** Stop applying the current data monitor's updates and have the session take a full snapshot. */
  private requestResync(live: Set<string>): void {
    this.needFullResync = true;
    live.delete(this.dataMonitorId);
    this.buffered.delete(this.dataMonitorId);
    if (this.pendingResync) {
      this.pendingResync.again = true;
    } else {
      let finish = () => {};
      const done = new Promise<void>((resolve) => (finish = resolve));
      this.pendingResync = { done, finish, again: false };
    }
    this.wakeResync?.();
  }

  private resyncRequested(): Promise<typeof RESYNC> {
    if (this.pendingResync) return Promise.resolve(RESYNC);
    return new Promise((resolve) => (this.wakeResync = () => resolve(RESYNC)));
  }

  /** Cancel the data monitor and monitor again from scratch, on the same connection, until a snapshot applies. */
  private async resyncData(conn: JsonRpcConnection, schema: DatabaseSchema, live: Set<string>): Promise<void> {
    this.wakeResync = undefined;
    const resync = this.pendingResync;
    if (!resync) return;
    do {
      resync.again = false;
      const stale = this.dataMonitorId;
      this.dataMonitorId = `${DATA_MONITOR}-${++this.resyncs}`;
      await conn.request('monitor_cancel', [stale]).catch((err: unknown) => {
        if (!(err instanceof RpcError)) throw err;
      });
      await this.monitorData(conn, schema, live);
    } while (resync.again);
    this.pendingResync = undefined;
    resync.finish();
    this.log.info({ remote: conn.remote, resyncs: this.resyncs }, 'OVSDB replica resynced from a full snapshot');
  }

  private emitChanges(changes: RowChange[]): void {
    if (changes.length > 0) this.emit('change', changes);
  }

  /** Monitor our database's row in _Server and refuse servers that are not fit (leader, quorum, staleness). */
  private async watchServer(conn: JsonRpcConnection, live: Set<string>): Promise<ServerDbStatus> {
    const schema = parseSchema(await conn.request('get_schema', ['_Server']));
    const replica = new Replica(schema, ['Database']);
    this.serverReplica = replica;
    const updates = await conn.request('monitor_cond', [
      '_Server',
      SERVER_MONITOR,
      { Database: [{ where: [['name', '==', this.options.database]] }] },
    ]);
    replica.applyUpdates2(updates);
    this.drain(conn, SERVER_MONITOR, live);
    return this.checkServer(conn);
  }

  /** Returns the status when acceptable; otherwise closes the connection with the reason and throws it. */
  private checkServer(conn: JsonRpcConnection): ServerDbStatus {
    const row = this.serverReplica ? [...this.serverReplica.rows('Database')][0] : undefined;
    const status = row ? readServerRow(row) : undefined;
    const reason = status
      ? rejectReason(status, this.leaderOnly, this.minIndex)
      : `server has no _Server row for ${this.options.database}`;
    if (reason || !status) {
      const error = new OvsdbError(`${conn.remote}: ${reason}`);
      this.log.info({ remote: conn.remote, reason }, 'moving to another OVSDB server');
      conn.close(error);
      throw error;
    }
    if (status.index !== undefined) this.minIndex = Math.max(this.minIndex, status.index);
    return status;
  }

  /** Start the data monitor; returns true when it resumed from the last transaction id. */
  private async monitorData(conn: JsonRpcConnection, schema: DatabaseSchema, live: Set<string>): Promise<boolean> {
    const tables = this.options.tables;
    const id = this.dataMonitorId;
    this.buffered.set(id, []);
    for (;;) {
      const method = this.monitorMethod;
      const requests: Record<string, unknown> = {};
      for (const table of tables) requests[table] = method === 'monitor' ? {} : [{}];
      const params: unknown[] = [this.options.database, id, requests];
      if (method === 'monitor_cond_since') {
        // A resume sends diffs, which only fit the replica lastTxnId describes, in the same schema.
        const resumable = this.replicaValue && !this.needFullResync && sameSchema(this.replicaValue.schema, schema);
        params.push(resumable ? this.lastTxnId : ZERO_UUID);
      }
      let reply: unknown;
      try {
        reply = await conn.request(method, params);
      } catch (err) {
        if (err instanceof RpcError && err.error === 'unknown method' && method !== 'monitor') {
          this.monitorMethod = method === 'monitor_cond_since' ? 'monitor_cond' : 'monitor';
          continue;
        }
        throw err;
      }
      const resumed = this.applyMonitorReply(conn, method, reply, schema);
      this.drain(conn, id, live);
      return resumed;
    }
  }

  private applyMonitorReply(conn: JsonRpcConnection, method: MonitorMethod, reply: unknown, schema: DatabaseSchema): boolean {
    let updates = reply;
    let found = false;
    let txnId: string | undefined;
    let changes: RowChange[];
    const current = this.replicaValue;
    let next = current;
    try {
      if (method === 'monitor_cond_since') {
        if (!Array.isArray(reply) || reply.length !== 3 || typeof reply[1] !== 'string') {
          throw new CacheInconsistentError(`malformed monitor_cond_since reply: ${JSON.stringify(reply)?.slice(0, 200)}`);
        }
        found = reply[0] === true;
        txnId = reply[1];
        updates = reply[2];
      }
      if (found && current && sameSchema(current.schema, schema)) {
        changes = current.applyUpdates2(updates);
      } else {
        found = false;
        const fresh = new Replica(schema, this.options.tables, this.options.indexes);
        if (method === 'monitor') fresh.applyUpdates1(updates);
        else fresh.applyUpdates2(updates);
        if (current && sameSchema(current.schema, schema)) {
          changes = current.replaceWith(fresh);
        } else {
          // First sync, or the schema was converted: callers get a new replica object.
          next = fresh;
          changes = [...freshChanges(fresh)];
        }
      }
    } catch (err) {
      // Neither the replica nor lastTxnId moved; whatever comes next must not resume from here.
      this.needFullResync = true;
      this.log.error(
        { remote: conn.remote, method, resumed: found, err: (err as Error).message },
        'cannot apply OVSDB monitor reply; the next monitor takes a full snapshot',
      );
      throw err;
    }
    this.replicaValue = next;
    if (txnId !== undefined) this.lastTxnId = txnId;
    if (!found) this.needFullResync = false;
    this.emitChanges(changes);
    return found;
  }

  private drain(conn: JsonRpcConnection, id: string, live: Set<string>): void {
    const pending = this.buffered.get(id) ?? [];
    this.buffered.set(id, []);
    live.add(id);
    for (const [method, ...params] of pending) {
      // A failed update ends the monitor; what it buffered after that is stale.
      if (!live.has(id)) break;
      this.applyNotification(conn, id, method as string, params, live);
    }
  }
}

function* freshChanges(replica: Replica): Iterable<RowChange> {
  for (const table of replica.tableNames) {
    for (const row of replica.rows(table)) yield { table, uuid: row._uuid, new: row };
  }
}

function sameSchema(a: DatabaseSchema, b: DatabaseSchema): boolean {
  return a.version === b.version && a.cksum === b.cksum;
}
