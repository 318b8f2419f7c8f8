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
 *
 * This file is the public OvsdbClient and the session above; each job it
 * delegates has a file of its own:
 *   reconnect.ts           which remote next, and when (backoff, hurry, stop)
 *   server-watch.ts        whether the server is fit: leader, quorum, staleness
 *   data-monitor.ts        the replica: monitor, resume, updates, resync
 *   monitor-updates.ts     one connection's update notifications, held back
 *                          until their monitor's reply is applied
 *   transaction-runner.ts  transaction(): re-runs, budget, giving up
 */
import { EventEmitter } from 'node:events';
import { CONDITIONS, DataMonitor, RESYNC } from './data-monitor.js';
import { ConnectionClosedError, OvsdbError, RpcError } from './errors.js';
import { silentLogger, type Logger } from './logger.js';
import { MonitorUpdates } from './monitor-updates.js';
import { Reconnector } from './reconnect.js';
import type { Remote } from './remote.js';
import type { IndexSpec, Replica, RowChange } from './replica.js';
import { JsonRpcConnection, type RequestOptions } from './rpc.js';
import { parseSchema } from './schema.js';
import type { ServerDbStatus } from './server-status.js';
import { ServerWatch } from './server-watch.js';
import { Transaction, type Condition, type TransactionResult } from './transaction.js';
import { TransactionRunner, type TransactionOptions } from './transaction-runner.js';
import { openTransport, type TlsFiles } from './transport.js';
import type { DatabaseSchema } from './types.js';

export interface OvsdbClientOptions {
  /** OVSDB remote(s): `unix:PATH`, `tcp:HOST:PORT`, `ssl:HOST:PORT`, comma-separated for a cluster. */
  remote: string;
  database: string;
  /** Tables to replicate (all their columns). */
  tables: string[];
  /** Per table, replicate only rows matching one of these clauses (see DataMonitorOptions). */
  where?: Record<string, readonly Condition[]>;
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

export class OvsdbClient extends EventEmitter<ClientEvents> {
  private readonly reconnect: Reconnector;
  private readonly log: Logger;
  private readonly requestTimeoutMs: number;
  private readonly runner: TransactionRunner;
  private readonly server: ServerWatch;
  private readonly data: DataMonitor;
  private conn: JsonRpcConnection | undefined;
  private ready = false;
  private lastError: Error | undefined;
  private running: Promise<void> | undefined;

  constructor(private readonly options: OvsdbClientOptions) {
    super();
    this.setMaxListeners(0);
    this.reconnect = new Reconnector(options.remote, options.backoff);
    this.log = options.logger ?? silentLogger;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    this.server = new ServerWatch(options.database, options.leaderOnly ?? true, this.log);
    this.data = new DataMonitor(options, this.log, (changes) => this.emit('change', changes));
    this.runner = new TransactionRunner(
      {
        isReady: () => this.ready,
        isClosed: () => this.closed,
        lastError: () => this.lastError,
        whenReady: (timeoutMs) => this.whenReady(timeoutMs),
        hurry: () => this.reconnect.hurry(),
        replica: () => this.replica,
        conditionsSettled: (timeoutMs) => this.conditionsSettled(timeoutMs),
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
    const replica = this.data.replica;
    if (!replica) throw new OvsdbError('the replica is not available before the first sync');
    return replica;
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

  /**
   * Replicate only the rows of `table` that match one of `conditions` from
   * now on (monitor_cond_change on the live connection, or the next
   * connection's monitor). Transactions wait until the replica shows them.
   */
  setConditions(table: string, conditions: readonly Condition[]): void {
    this.data.setWhere(table, conditions);
  }

  /** Resolve once the replica holds the rows the conditions last set ask for; reject after `timeoutMs`. */
  async conditionsSettled(timeoutMs = this.requestTimeoutMs): Promise<void> {
    if (this.data.conditionsAreSettled) return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ConnectionClosedError(`the ${this.options.database} monitor did not take its new conditions within ${timeoutMs} ms`, false)), timeoutMs);
    });
    try {
      await Promise.race([this.data.conditionsSettled(), timeout]);
    } finally {
      clearTimeout(timer);
    }
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
    for (let resync = this.data.resyncDone; resync; resync = this.data.resyncDone) await resync;
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
    const updates = new MonitorUpdates();
    conn.on('notification', (method, params) => {
      try {
        if (method === 'monitor_canceled') {
          conn.close(new ConnectionClosedError('server canceled the monitor (database changed); resyncing', true));
          return;
        }
        updates.receive(method, params);
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
        status = await this.server.watch(conn, updates);
      }
      await conn.request('set_db_change_aware', [true]).catch((err: unknown) => {
        if (!(err instanceof RpcError)) throw err;
      });
      const resumed = await this.data.monitor(conn, schema, updates);
      this.ready = true;
      this.lastError = undefined;
      this.runner.answered();
      this.log.info({ remote: name, resumed, model: status?.model }, 'OVSDB session ready');
      this.emit('ready', { remote: name, resumed, status });
      for (;;) {
        const error = await Promise.race([closed, this.data.resyncRequested(), this.data.conditionsChanged()]);
        if (error === CONDITIONS) {
          await this.data.changeConditions(conn, schema, updates).catch((err: unknown) => {
            this.lastError = err as Error;
            throw err;
          });
          continue;
        }
        if (error === RESYNC) {
          await this.data.resync(conn, schema, updates).catch((err: unknown) => {
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
      this.data.connectionEnded();
      if (this.ready) {
        this.ready = false;
        this.emit('disconnected', this.lastError);
      }
    }
  }
}
