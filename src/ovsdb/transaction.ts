/**
 * Builds the operations of one `transact` (RFC 7047 §5.2) from typed values,
 * encoding them with the schema, and maps the server's result array back:
 * per-operation results, real UUIDs for named inserts, and a typed error
 * naming the failing operation.
 */
import { randomUUID } from 'node:crypto';
import { encodeDatum, encodeRow } from './codec.js';
import { OvsdbError, TransactionError } from './errors.js';
import { getColumn, getTable } from './schema.js';
import {
  NamedUuid,
  type ColumnType,
  type DatabaseSchema,
  type EncodableDatum,
  type Row,
  type TableSchema,
} from './types.js';

export type ConditionFunction = '==' | '!=' | 'includes' | 'excludes' | '<' | '<=' | '>' | '>=';
export type Mutator = '+=' | '-=' | '*=' | '/=' | '%=' | 'insert' | 'delete';

/** `[column, function, value]`; the value is encoded with the column's type. */
export type Condition = readonly [column: string, fn: ConditionFunction, value: EncodableDatum];
/** `[column, mutator, value]`. For a map `delete`, the value may be a set of keys. */
export type Mutation = readonly [column: string, mutator: Mutator, value: EncodableDatum];

export type Operation = Record<string, unknown> & { op: string };

export interface InsertOptions {
  /** A client-chosen row UUID (OVS >= 2.13), which makes a retried insert detectable. */
  uuid?: string;
}

export class Transaction {
  readonly operations: Operation[] = [];
  private readonly named = new Map<string, number>();
  private nextName = 0;
  /** Indexes of `wait` operations this builder added as optimistic-concurrency guards. */
  readonly guardIndexes = new Set<number>();

  constructor(
    readonly schema: DatabaseSchema,
    readonly database: string = schema.name,
  ) {}

  get isEmpty(): boolean {
    return this.operations.every((op) => op.op === 'comment');
  }

  /** Insert a row; the returned handle can be used as a uuid value in later operations. */
  insert(table: string, row: Record<string, EncodableDatum>, options: InsertOptions = {}): NamedUuid {
    const t = getTable(this.schema, table);
    const name = `row${this.nextName++}`;
    const op: Operation = { op: 'insert', table, row: encodeRow(t, row), 'uuid-name': name };
    if (options.uuid !== undefined) op.uuid = options.uuid;
    this.named.set(name, this.operations.length);
    this.operations.push(op);
    return new NamedUuid(name);
  }

  update(table: string, where: readonly Condition[], row: Record<string, EncodableDatum>): this {
    const t = getTable(this.schema, table);
    return this.push({ op: 'update', table, where: this.encodeWhere(t, where), row: encodeRow(t, row) });
  }

  mutate(table: string, where: readonly Condition[], mutations: readonly Mutation[]): this {
    const t = getTable(this.schema, table);
    return this.push({
      op: 'mutate',
      table,
      where: this.encodeWhere(t, where),
      mutations: mutations.map(([column, mutator, value]) => [
        column,
        mutator,
        encodeDatum(mutationType(t, column, mutator, value), value, { relaxed: true }),
      ]),
    });
  }

  delete(table: string, where: readonly Condition[]): this {
    const t = getTable(this.schema, table);
    return this.push({ op: 'delete', table, where: this.encodeWhere(t, where) });
  }

  select(table: string, where: readonly Condition[], columns?: readonly string[]): this {
    const t = getTable(this.schema, table);
    const op: Operation = { op: 'select', table, where: this.encodeWhere(t, where) };
    if (columns) op.columns = [...columns];
    return this.push(op);
  }

  /** A raw `wait` (RFC 7047 §5.2.6). `timeoutMs` 0 makes it a pure check. */
  wait(
    table: string,
    where: readonly Condition[],
    columns: readonly string[],
    until: '==' | '!=',
    rows: readonly Record<string, EncodableDatum>[],
    timeoutMs = 0,
  ): this {
    const t = getTable(this.schema, table);
    return this.push({
      op: 'wait',
      table,
      where: this.encodeWhere(t, where),
      columns: [...columns],
      until,
      rows: rows.map((r) => encodePartialRow(t, r)),
      timeout: timeoutMs,
    });
  }

  /**
   * Fail the transaction (with a conflict) if `row` changed in the given
   * columns since it was read from the replica: optimistic concurrency, as
   * the OVS IDL's verify does.
   */
  verify(table: string, row: Row, columns: readonly string[]): this {
    const values: Record<string, EncodableDatum> = {};
    for (const column of columns) values[column] = row[column] ?? null;
    this.guardIndexes.add(this.operations.length);
    return this.wait(table, [['_uuid', '==', row._uuid]], columns, '==', [values]);
  }

  /**
   * Fail the transaction (with a conflict) if a row with `column` = `value`
   * exists: create-if-absent on columns without a schema index.
   */
  guardAbsent(table: string, column: string, value: EncodableDatum): this {
    this.guardIndexes.add(this.operations.length);
    return this.wait(table, [[column, '==', value]], [column], '!=', [{ [column]: value }]);
  }

  /**
   * Fail the transaction (with a conflict) if any row matches `where`: for
   * a value that must stay unique within a group of rows (a VLAN tag among
   * one parent port's children) and that no schema index protects.
   */
  guardNone(table: string, where: readonly Condition[]): this {
    this.guardIndexes.add(this.operations.length);
    return this.wait(table, where, [], '==', []);
  }

  /**
   * Fail the transaction (with a conflict) unless the row whose `keyColumn`
   * is `key` also matches `where`: a compare-and-swap on values the replica
   * showed, narrower than verify() on a whole busy column.
   */
  guardMatches(table: string, keyColumn: string, key: EncodableDatum, where: readonly Condition[]): this {
    this.guardIndexes.add(this.operations.length);
    return this.wait(table, [[keyColumn, '==', key], ...where], [keyColumn], '==', [{ [keyColumn]: key }]);
  }

  comment(text: string): this {
    return this.push({ op: 'comment', comment: text });
  }

  assertLock(lock: string): this {
    return this.push({ op: 'assert', lock });
  }

  /** Turn the server's result array into results, or throw the failing operation's error. */
  parseResult(result: unknown): TransactionResult {
    if (!Array.isArray(result)) {
      throw new OvsdbError(`transact result is not an array: ${JSON.stringify(result)?.slice(0, 200)}`);
    }
    for (let i = 0; i < result.length; i++) {
      const r: unknown = result[i];
      if (r && typeof r === 'object' && 'error' in r) {
        const e = r as { error: unknown; details?: unknown };
        throw new TransactionError(
          i,
          this.operations[i],
          String(e.error),
          typeof e.details === 'string' ? e.details : undefined,
        );
      }
    }
    if (result.length < this.operations.length) {
      throw new OvsdbError(`transact returned ${result.length} results for ${this.operations.length} operations`);
    }
    return new TransactionResult(result.slice(0, this.operations.length), this.named);
  }

  private push(op: Operation): this {
    this.operations.push(op);
    return this;
  }

  private encodeWhere(t: TableSchema, where: readonly Condition[]): unknown[] {
    return encodeConditions(t, where);
  }
}

/** Conditions on the wire, for a transaction's `where` or a monitor's. */
export function encodeConditions(t: TableSchema, where: readonly Condition[]): unknown[] {
  return where.map(([column, fn, value]) => [column, fn, encodeDatum(getColumn(t, column).type, value, { relaxed: true })]);
}

export class TransactionResult {
  constructor(
    readonly results: unknown[],
    private readonly named: Map<string, number>,
  ) {}

  /** The real UUID the server gave a row inserted with `tx.insert`. */
  uuidOf(handle: NamedUuid): string {
    const index = this.named.get(handle.name);
    const r = index === undefined ? undefined : this.results[index];
    const uuid = (r as { uuid?: unknown } | undefined)?.uuid;
    if (Array.isArray(uuid) && uuid[0] === 'uuid' && typeof uuid[1] === 'string') return uuid[1];
    throw new OvsdbError(`no uuid for inserted row ${handle.name}`);
  }

  /** `count` of an update/mutate/delete operation. */
  countOf(index: number): number {
    const count = (this.results[index] as { count?: unknown } | undefined)?.count;
    if (typeof count !== 'number') throw new OvsdbError(`operation ${index} has no count`);
    return count;
  }

  /** Raw `rows` of a select operation (wire form). */
  rowsOf(index: number): Record<string, unknown>[] {
    const rows = (this.results[index] as { rows?: unknown } | undefined)?.rows;
    if (!Array.isArray(rows)) throw new OvsdbError(`operation ${index} has no rows`);
    return rows as Record<string, unknown>[];
  }
}

/** A fresh random UUID for client-chosen row ids. */
export function newRowUuid(): string {
  return randomUUID();
}

function encodePartialRow(t: TableSchema, row: Record<string, EncodableDatum>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [column, value] of Object.entries(row)) {
    out[column] = encodeDatum(getColumn(t, column).type, value);
  }
  return out;
}

/**
 * The type a mutation's argument is encoded with: a set/map insert takes a
 * set/map of any size, and a map delete may take a set of keys.
 */
function mutationType(t: TableSchema, column: string, mutator: Mutator, value: EncodableDatum): ColumnType {
  const type = getColumn(t, column).type;
  if (mutator === 'delete' && type.value && !(value instanceof Map)) {
    return { key: type.key, min: 0, max: Infinity };
  }
  if (mutator === 'insert' || mutator === 'delete') return { ...type, min: 0, max: Infinity };
  return { key: type.key, min: 1, max: 1 };
}
