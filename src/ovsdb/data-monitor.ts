/**
 * The data monitor: keeps the replica of the caller's tables in sync with
 * the database, over one connection after another.
 *
 * Each connection monitors the tables with monitor_cond_since, resuming from
 * the last transaction id when the server still has it (falling back to
 * monitor_cond, then monitor, on servers without it), and applies the
 * update/update2/update3 notifications that follow. An update is applied
 * whole or not at all: when one cannot be applied, the monitor is dropped
 * and taken again as a full snapshot on the same connection (a resync), so
 * that the replica never drifts from the database.
 */
import { ZERO_UUID } from './codec.js';
import { CacheInconsistentError, OvsdbError, RpcError } from './errors.js';
import type { Logger } from './logger.js';
import type { MonitorUpdates } from './monitor-updates.js';
import { Replica, type IndexSpec, type RowChange } from './replica.js';
import type { JsonRpcConnection } from './rpc.js';
import { getTable } from './schema.js';
import { encodeConditions, type Condition } from './transaction.js';
import type { DatabaseSchema } from './types.js';

const DATA_MONITOR = 'data';

type MonitorMethod = 'monitor_cond_since' | 'monitor_cond' | 'monitor';

/** What resyncRequested() resolves with. */
export const RESYNC = Symbol('resync');
/** What conditionsChanged() resolves with. */
export const CONDITIONS = Symbol('conditions');

export interface DataMonitorOptions {
  database: string;
  /** Tables to replicate (all their columns). */
  tables: string[];
  /**
   * Per table, replicate only the rows that match one of these clauses
   * (monitor_cond; a server without it sends every row, which the caller
   * must tolerate). Tables not named here are replicated whole.
   */
  where?: Record<string, readonly Condition[]>;
  indexes?: Record<string, IndexSpec>;
}

interface PendingResync {
  /** Resolves once the replica is in sync again, or the connection is gone. */
  done: Promise<void>;
  finish(): void;
  /** Another update failed while this resync ran: run it once more. */
  again: boolean;
}

export class DataMonitor {
  private replicaValue: Replica | undefined;
  private lastTxnId = ZERO_UUID;
  /** Id of the current data monitor; a resync on the same connection takes a new one. */
  private dataMonitorId = DATA_MONITOR;
  private resyncs = 0;
  /** Numbers the monitor ids this monitor takes after the first. */
  private monitorIds = 0;
  /** Set when the replica may not match lastTxnId: the next monitor must take a full snapshot. */
  private needFullResync = false;
  /** A resync on the current connection, requested or running. */
  private pendingResync: PendingResync | undefined;
  private wakeResync: (() => void) | undefined;
  private monitorMethod: MonitorMethod = 'monitor_cond_since';
  /** The monitor conditions: the caller's, as last set (setWhere). */
  private readonly where: Record<string, readonly Condition[]>;
  /** Bumped by every setWhere(). */
  private wantedConditions = 0;
  /** Tables whose conditions setWhere() changed since the monitor last took them. */
  private readonly changedTables = new Set<string>();
  /** The version of the conditions the replica reflects. */
  private appliedConditions = 0;
  private wakeConditions: (() => void) | undefined;
  private readonly settledWaiters = new Set<{ version: number; resolve: () => void }>();

  constructor(
    private readonly options: DataMonitorOptions,
    private readonly log: Logger,
    /** Row changes, one batch per update message (also for a resync); never empty. */
    private readonly emitChanges: (changes: RowChange[]) => void,
  ) {
    this.where = { ...(options.where ?? {}) };
  }

  /** The replica, from the first monitor reply applied on. */
  get replica(): Replica | undefined {
    return this.replicaValue;
  }

  /** While a resync is requested or runs: resolves once the replica is in sync again, or the connection is gone. */
  get resyncDone(): Promise<void> | undefined {
    return this.pendingResync?.done;
  }

  /**
   * Replicate only the rows of `table` that match one of `conditions` from
   * now on: the session changes the monitor (conditionsChanged(), then
   * changeConditions()), and conditionsSettled() says when the replica shows it.
   */
  setWhere(table: string, conditions: readonly Condition[]): void {
    if (!this.options.tables.includes(table)) throw new OvsdbError(`table ${table} is not monitored`);
    this.where[table] = conditions;
    this.changedTables.add(table);
    this.wantedConditions++;
    this.wakeConditions?.();
  }

  get conditionsAreSettled(): boolean {
    return this.appliedConditions >= this.wantedConditions;
  }

  /** Resolves once the conditions last set are the replica's (at once if they are). */
  conditionsSettled(): Promise<void> {
    if (this.appliedConditions >= this.wantedConditions) return Promise.resolve();
    return new Promise((resolve) => this.settledWaiters.add({ version: this.wantedConditions, resolve }));
  }

  /** Resolves once setWhere() asked for conditions the monitor does not have yet. */
  conditionsChanged(): Promise<typeof CONDITIONS> {
    if (this.appliedConditions < this.wantedConditions) return Promise.resolve(CONDITIONS);
    return new Promise((resolve) => (this.wakeConditions = () => resolve(CONDITIONS)));
  }

  /**
   * Give the data monitor the conditions last set, on the same connection
   * (monitor_cond_change). The server sends the rows that come and go before
   * its reply; they arrive under the new monitor id, held back until then.
   */
  async changeConditions(conn: JsonRpcConnection, schema: DatabaseSchema, updates: MonitorUpdates): Promise<void> {
    this.wakeConditions = undefined;
    const version = this.wantedConditions;
    if (this.monitorMethod === 'monitor') {
      // A server without conditions sends every row already.
      this.conditionsApplied(version);
      return;
    }
    const stale = this.dataMonitorId;
    const id = `${DATA_MONITOR}-${++this.monitorIds}`;
    // Only the tables that changed: the server goes through every row of each table it is given.
    const requests: Record<string, unknown> = {};
    for (const table of this.changedTables) requests[table] = [{ where: encodeConditions(getTable(schema, table), this.where[table] ?? []) }];
    this.changedTables.clear();
    updates.hold(id, (method, params) => this.applyNotification(conn, updates, id, method, params));
    // Until the reply, the replica may hold either condition's rows: a resume from here would not fit it.
    this.needFullResync = true;
    await conn.request('monitor_cond_change', [stale, id, requests]);
    updates.drop(stale);
    this.dataMonitorId = id;
    updates.release(id);
    // An update of the new monitor that did not apply has requested a resync, which keeps the full snapshot.
    if (!this.pendingResync) this.needFullResync = false;
    this.conditionsApplied(version);
    this.log.debug({ remote: conn.remote, tables: Object.keys(requests) }, 'OVSDB monitor conditions changed');
  }

  /** Start the data monitor; returns true when it resumed from the last transaction id. */
  async monitor(conn: JsonRpcConnection, schema: DatabaseSchema, updates: MonitorUpdates): Promise<boolean> {
    const tables = this.options.tables;
    const id = this.dataMonitorId;
    const conditions = this.wantedConditions;
    this.changedTables.clear();
    updates.hold(id, (method, params) => this.applyNotification(conn, updates, id, method, params));
    for (;;) {
      const method = this.monitorMethod;
      const requests: Record<string, unknown> = {};
      for (const table of tables) {
        const where = this.where[table];
        requests[table] = method === 'monitor' ? {} : [where ? { where: encodeConditions(getTable(schema, table), where) } : {}];
      }
      const params: unknown[] = [this.options.database, id, requests];
      if (method === 'monitor_cond_since') {
        // A resume sends diffs, which only fit the replica lastTxnId describes, in the same schema and conditions.
        const resumable =
          this.replicaValue && !this.needFullResync && sameSchema(this.replicaValue.schema, schema) && this.appliedConditions === conditions;
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
      this.conditionsApplied(conditions);
      updates.release(id);
      return resumed;
    }
  }

  /** Resolves once an update could not be applied (at once if one could not already). */
  resyncRequested(): Promise<typeof RESYNC> {
    if (this.pendingResync) return Promise.resolve(RESYNC);
    return new Promise((resolve) => (this.wakeResync = () => resolve(RESYNC)));
  }

  /** Cancel the data monitor and monitor again from scratch, on the same connection, until a snapshot applies. */
  async resync(conn: JsonRpcConnection, schema: DatabaseSchema, updates: MonitorUpdates): Promise<void> {
    this.wakeResync = undefined;
    const resync = this.pendingResync;
    if (!resync) return;
    do {
      resync.again = false;
      const stale = this.dataMonitorId;
      this.resyncs++;
      this.dataMonitorId = `${DATA_MONITOR}-${++this.monitorIds}`;
      await conn.request('monitor_cancel', [stale]).catch((err: unknown) => {
        if (!(err instanceof RpcError)) throw err;
      });
      await this.monitor(conn, schema, updates);
    } while (resync.again);
    this.pendingResync = undefined;
    resync.finish();
    this.log.info({ remote: conn.remote, resyncs: this.resyncs }, 'OVSDB replica resynced from a full snapshot');
  }

  /** The connection ended: what is left of a resync happens with the next connection's full snapshot. */
  connectionEnded(): void {
    this.wakeResync = undefined;
    this.wakeConditions = undefined;
    this.pendingResync?.finish();
    this.pendingResync = undefined;
  }

  private applyNotification(conn: JsonRpcConnection, updates: MonitorUpdates, id: string, method: string, params: unknown[]): void {
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
      this.requestResync(updates);
      return;
    }
    if (txnId !== undefined) this.lastTxnId = txnId;
    this.changed(changes);
  }

  /** Stop applying the current data monitor's updates and have the session take a full snapshot. */
  private requestResync(updates: MonitorUpdates): void {
    this.needFullResync = true;
    updates.drop(this.dataMonitorId);
    if (this.pendingResync) {
      this.pendingResync.again = true;
    } else {
      let finish = () => {};
      const done = new Promise<void>((resolve) => (finish = resolve));
      this.pendingResync = { done, finish, again: false };
    }
    this.wakeResync?.();
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
    this.changed(changes);
    return found;
  }

  private conditionsApplied(version: number): void {
    this.appliedConditions = Math.max(this.appliedConditions, version);
    for (const waiter of [...this.settledWaiters]) {
      if (waiter.version > this.appliedConditions) continue;
      this.settledWaiters.delete(waiter);
      waiter.resolve();
    }
  }

  private changed(changes: RowChange[]): void {
    if (changes.length > 0) this.emitChanges(changes);
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
