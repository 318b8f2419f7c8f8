/**
 * In-memory replica of monitored tables, kept current from the server's
 * update notifications, so that reads never go to the server.
 *
 * Rows are immutable: a change replaces the row object, so a caller holding
 * a row keeps a consistent snapshot. Lookups by indexed column and by an
 * `external_ids` key are O(1).
 */
import { EventEmitter } from 'node:events';
import { applyDiff, datumEquals, decodeRow } from './codec.js';
import { CacheInconsistentError, OvsdbError } from './errors.js';
import { getColumn, getTable } from './schema.js';
import type { Atom, DatabaseSchema, Datum, Row, TableSchema } from './types.js';

export interface IndexSpec {
  /** Scalar columns to index (schema indexes on one column are added automatically). */
  columns?: string[];
  /** `external_ids` keys to index by value. */
  externalIds?: string[];
}

export interface RowChange {
  table: string;
  uuid: string;
  /** Absent for an insert. */
  old?: Row;
  /** Absent for a delete. */
  new?: Row;
}

type UuidSets = Map<Atom, Set<string>>;

interface TableState {
  schema: TableSchema;
  rows: Map<string, Row>;
  byColumn: Map<string, UuidSets>;
  byExternalId: Map<string, UuidSets>;
}

/** A row change checked against the replica and not applied yet. */
interface Planned {
  t: TableState;
  change: RowChange;
}

interface Waiter {
  check(): boolean;
}

export interface ReplicaEvents {
  change: [changes: RowChange[]];
}

export class Replica extends EventEmitter<ReplicaEvents> {
  private readonly state = new Map<string, TableState>();
  private readonly waiters = new Set<Waiter>();
  /** Incremented on every applied update; lets a retrying transaction wait for news. */
  seqno = 0;

  constructor(
    readonly schema: DatabaseSchema,
    tables: Iterable<string>,
    indexes: Record<string, IndexSpec> = {},
  ) {
    super();
    this.setMaxListeners(0);
    for (const name of tables) {
      const schemaTable = getTable(schema, name);
      const spec = indexes[name] ?? {};
      const columns = new Set(spec.columns ?? []);
      for (const index of schemaTable.indexes) {
        if (index.length === 1 && index[0] !== undefined) columns.add(index[0]);
      }
      for (const column of columns) {
        const type = getColumn(schemaTable, column).type;
        if (type.max !== 1 || type.value) {
          throw new OvsdbError(`cannot index ${name}.${column}: only scalar columns can be indexed`);
        }
      }
      if (spec.externalIds?.length && !schemaTable.columns.has('external_ids')) {
        throw new OvsdbError(`cannot index ${name}.external_ids: the table has no such column`);
      }
      this.state.set(name, {
        schema: schemaTable,
        rows: new Map(),
        byColumn: new Map([...columns].map((c) => [c, new Map()])),
        byExternalId: new Map((spec.externalIds ?? []).map((k) => [k, new Map()])),
      });
    }
  }

  get tableNames(): string[] {
    return [...this.state.keys()];
  }

  get(table: string, uuid: string): Row | undefined {
    return this.table(table).rows.get(uuid);
  }

  rows(table: string): IterableIterator<Row> {
    return this.table(table).rows.values();
  }

  count(table: string): number {
    return this.table(table).rows.size;
  }

  /** Rows whose indexed `column` equals `value`. */
  findBy(table: string, column: string, value: Atom): Row[] {
    const t = this.table(table);
    const index = t.byColumn.get(column);
    if (!index) throw new OvsdbError(`${table}.${column} is not indexed in this replica`);
    return this.resolve(t, index.get(value));
  }

  findOne(table: string, column: string, value: Atom): Row | undefined {
    return this.findBy(table, column, value)[0];
  }

  /** Rows whose `external_ids` has `key` = `value` (the key must be declared in IndexSpec). */
  findByExternalId(table: string, key: string, value: string): Row[] {
    const t = this.table(table);
    const index = t.byExternalId.get(key);
    if (!index) throw new OvsdbError(`${table}.external_ids:${key} is not indexed in this replica`);
    return this.resolve(t, index.get(value));
  }

  /**
   * Apply `<table-updates2>` (monitor_cond / monitor_cond_since, update2/update3).
   * All or nothing: throws CacheInconsistentError, with the replica untouched,
   * when an update does not fit it; the session must then rebuild it from scratch.
   */
  applyUpdates2(updates: unknown): RowChange[] {
    const planned: Planned[] = [];
    for (const [tableName, rowUpdates] of objectEntries(updates, 'table-updates2')) {
      const t = this.monitored(tableName);
      for (const [uuid, update] of objectEntries(rowUpdates, `${tableName} row updates`)) {
        const [kind, body] = singleEntry(update, `${tableName} ${uuid}`);
        const old = t.rows.get(uuid);
        switch (kind) {
          case 'initial':
          case 'insert':
            planned.push(plan(t, tableName, uuid, old, this.decode(t, uuid, body)));
            break;
          case 'modify':
            if (!old) throw new CacheInconsistentError(`modify of unknown row ${tableName} ${uuid}`);
            planned.push(plan(t, tableName, uuid, old, this.applyModify(t, old, body)));
            break;
          case 'delete':
            if (!old) throw new CacheInconsistentError(`delete of unknown row ${tableName} ${uuid}`);
            planned.push(plan(t, tableName, uuid, old, undefined));
            break;
          default:
            throw new CacheInconsistentError(`unknown row update "${kind}" for ${tableName} ${uuid}`);
        }
      }
    }
    return this.applyPlanned(planned);
  }

  /** Apply RFC 7047 `<table-updates>` (plain `monitor`, `update` notifications); all or nothing. */
  applyUpdates1(updates: unknown): RowChange[] {
    const planned: Planned[] = [];
    for (const [tableName, rowUpdates] of objectEntries(updates, 'table-updates')) {
      const t = this.monitored(tableName);
      for (const [uuid, update] of objectEntries(rowUpdates, `${tableName} row updates`)) {
        const u = objectEntries(update, `${tableName} ${uuid}`);
        const next = u.find(([key]) => key === 'new')?.[1];
        const old = t.rows.get(uuid);
        if (next === undefined) {
          if (!old) throw new CacheInconsistentError(`delete of unknown row ${tableName} ${uuid}`);
          planned.push(plan(t, tableName, uuid, old, undefined));
        } else {
          // `new` holds every monitored column, so defaults (not the old row) fill the rest.
          planned.push(plan(t, tableName, uuid, old, this.decode(t, uuid, next)));
        }
      }
    }
    return this.applyPlanned(planned);
  }

  /**
   * Replace the whole content with `fresh` (a full resync), reporting the
   * difference as changes so that listeners see one consistent stream.
   */
  replaceWith(fresh: Replica): RowChange[] {
    const changes: RowChange[] = [];
    for (const [name, t] of this.state) {
      const next = fresh.state.get(name);
      if (!next) continue;
      for (const [uuid, old] of t.rows) {
        const row = next.rows.get(uuid);
        if (!row) changes.push({ table: name, uuid, old });
        else if (!rowsEqual(t.schema, old, row)) changes.push({ table: name, uuid, old, new: row });
      }
      for (const [uuid, row] of next.rows) {
        if (!t.rows.has(uuid)) changes.push({ table: name, uuid, new: row });
      }
      this.state.set(name, next);
    }
    this.commit(changes);
    return changes;
  }

  /**
   * Resolve with the first non-undefined value `probe` returns, evaluated now
   * and after every applied update; reject after `timeoutMs`.
   */
  waitFor<T>(
    probe: () => T | undefined,
    options: { timeoutMs: number; signal?: AbortSignal; what?: string },
  ): Promise<T> {
    const first = probe();
    if (first !== undefined) return Promise.resolve(first);
    return new Promise<T>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
        options.signal?.removeEventListener('abort', onAbort);
      };
      const waiter: Waiter = {
        check: () => {
          let value: T | undefined;
          try {
            value = probe();
          } catch (err) {
            done();
            reject(err);
            return true;
          }
          if (value === undefined) return false;
          done();
          resolve(value);
          return true;
        },
      };
      const onAbort = () => {
        done();
        reject(new OvsdbError(`waiting for ${options.what ?? 'a condition'} aborted`, { cause: options.signal?.reason }));
      };
      const timer = setTimeout(() => {
        done();
        reject(new OvsdbError(`timed out after ${options.timeoutMs} ms waiting for ${options.what ?? 'a condition'}`));
      }, options.timeoutMs);
      options.signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.add(waiter);
    });
  }

  private table(name: string): TableState {
    const t = this.state.get(name);
    if (!t) throw new OvsdbError(`table ${name} is not monitored by this replica`);
    return t;
  }

  private resolve(t: TableState, uuids: Set<string> | undefined): Row[] {
    if (!uuids) return [];
    const out: Row[] = [];
    for (const uuid of uuids) {
      const row = t.rows.get(uuid);
      if (row) out.push(row);
    }
    return out;
  }

  private monitored(name: string): TableState {
    const t = this.state.get(name);
    if (!t) throw new CacheInconsistentError(`update for table ${name}, which is not monitored`);
    return t;
  }

  /** The second half of an apply: nothing here can fail, so a batch lands whole. */
  private applyPlanned(planned: Planned[]): RowChange[] {
    for (const { t, change } of planned) {
      if (change.old) this.unindex(t, change.old);
      if (change.new) {
        t.rows.set(change.uuid, change.new);
        this.index(t, change.new);
      } else {
        t.rows.delete(change.uuid);
      }
    }
    const changes = planned.map((p) => p.change);
    this.commit(changes);
    return changes;
  }

  private decode(t: TableState, uuid: string, body: unknown): Row {
    try {
      return decodeRow(t.schema, uuid, body);
    } catch (err) {
      throw new CacheInconsistentError(`cannot decode ${t.schema.name} ${uuid}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  private applyModify(t: TableState, old: Row, diff: unknown): Row {
    const next: Record<string, Datum> = Object.assign(Object.create(null) as Record<string, Datum>, old);
    for (const [column, value] of objectEntries(diff, `${t.schema.name} modify`)) {
      const col = t.schema.columns.get(column);
      if (!col) throw new CacheInconsistentError(`modify of unknown column ${t.schema.name}.${column}`);
      try {
        next[column] = applyDiff(col.type, old[column] ?? null, value);
      } catch (err) {
        throw new CacheInconsistentError(
          `cannot apply diff to ${t.schema.name}.${column} of ${old._uuid}: ${(err as Error).message}`,
          { cause: err },
        );
      }
    }
    return next as Row;
  }

  private index(t: TableState, row: Row): void {
    forEachIndexEntry(t, row, addTo);
  }

  private unindex(t: TableState, row: Row): void {
    forEachIndexEntry(t, row, removeFrom);
  }

  private commit(changes: RowChange[]): void {
    this.seqno++;
    if (changes.length > 0) this.emit('change', changes);
    for (const waiter of [...this.waiters]) waiter.check();
  }
}

function plan(t: TableState, table: string, uuid: string, old: Row | undefined, row: Row | undefined): Planned {
  const change: RowChange = { table, uuid };
  if (old) change.old = old;
  if (row) change.new = row;
  return { t, change };
}

function rowsEqual(table: TableSchema, a: Row, b: Row): boolean {
  for (const column of table.columns.keys()) {
    if (!datumEquals(a[column] ?? null, b[column] ?? null)) return false;
  }
  return true;
}

/** Call `fn` for every index of the table with the key this row has in it. */
function forEachIndexEntry(t: TableState, row: Row, fn: (index: UuidSets, key: Atom, uuid: string) => void): void {
  for (const [column, index] of t.byColumn) {
    const value = row[column];
    if (value !== null && value !== undefined && !Array.isArray(value) && !(value instanceof Map)) {
      fn(index, value, row._uuid);
    }
  }
  if (t.byExternalId.size === 0) return;
  const ids = row.external_ids;
  if (!(ids instanceof Map)) return;
  for (const [key, index] of t.byExternalId) {
    const value = ids.get(key);
    if (value !== undefined) fn(index, value, row._uuid);
  }
}

function addTo(index: UuidSets, key: Atom, uuid: string): void {
  let set = index.get(key);
  if (!set) index.set(key, (set = new Set()));
  set.add(uuid);
}

function removeFrom(index: UuidSets, key: Atom, uuid: string): void {
  const set = index.get(key);
  if (!set) return;
  set.delete(uuid);
  if (set.size === 0) index.delete(key);
}

function objectEntries(value: unknown, what: string): [string, unknown][] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new CacheInconsistentError(`${what}: expected an object`);
  }
  return Object.entries(value);
}

function singleEntry(value: unknown, what: string): [string, unknown] {
  const entries = objectEntries(value, what);
  const first = entries[0];
  if (entries.length !== 1 || !first) {
    throw new CacheInconsistentError(`${what}: expected exactly one of initial/insert/modify/delete`);
  }
  return first;
}
