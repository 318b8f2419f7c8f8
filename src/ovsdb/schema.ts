/**
 * Parsing of `get_schema` results (RFC 7047 §3.2) into the typed descriptors
 * of types.ts. The codec trusts these descriptors completely, so anything the
 * server could not have meant is rejected here, once, with the table and
 * column named, instead of surfacing later as a confusing decode error.
 *
 * Validation follows what ovsdb-server itself accepts (`lib/ovsdb-types.c`,
 * `ovsdb/table.c`, `ovsdb/column.c`), with two deliberate relaxations:
 * unknown members are ignored, so a newer server's additions do not break
 * us, and table names are not checked for a leading "_" (every name is a Map
 * key, so even "__proto__" is harmless).
 */

import { CodecError, SchemaError } from './errors.js';
import type {
  Atom,
  AtomicType,
  BaseType,
  ColumnSchema,
  ColumnType,
  DatabaseSchema,
  TableSchema,
} from './types.js';

const ATOMIC_TYPES: ReadonlySet<string> = new Set<AtomicType>(['integer', 'real', 'boolean', 'string', 'uuid']);
const ID = /^[A-Za-z_][A-Za-z0-9_]*$/;
const VERSION = /^[0-9]+\.[0-9]+\.[0-9]+$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// ovsdb-server stores lengths and counts as C `unsigned int`.
const UINT_MAX = 4294967295;

/** The members of a base type that only make sense for one atomic type. */
const TYPED_MEMBERS: ReadonlyArray<readonly [string, AtomicType]> = [
  ['minInteger', 'integer'],
  ['maxInteger', 'integer'],
  ['minReal', 'real'],
  ['maxReal', 'real'],
  ['minLength', 'string'],
  ['maxLength', 'string'],
  ['refTable', 'uuid'],
  ['refType', 'uuid'],
];

type JsonObject = Record<string, unknown>;

export function parseSchema(json: unknown): DatabaseSchema {
  const db = object(json, 'database schema');
  const name = member(db, 'name');
  if (typeof name !== 'string' || name === '') throw new SchemaError('database schema: "name" must be a non-empty string');
  const where = `schema ${name}`;

  // ovsdb-server treats "version" as optional (pre-versioning schemas); "" stands for "none".
  const version = member(db, 'version');
  if (version !== undefined && (typeof version !== 'string' || !VERSION.test(version))) {
    throw new SchemaError(`${where}: "version" must be a string of the form x.y.z`);
  }
  const cksum = member(db, 'cksum');
  if (cksum !== undefined && typeof cksum !== 'string') throw new SchemaError(`${where}: "cksum" must be a string`);

  const tablesJson = object(member(db, 'tables'), `${where}: "tables"`);
  const tables = new Map<string, TableSchema>();
  for (const tableName of Object.keys(tablesJson)) {
    if (!ID.test(tableName)) throw new SchemaError(`${where}: table name "${tableName}" is not an identifier`);
    tables.set(tableName, parseTable(tableName, tablesJson[tableName]));
  }

  // RFC 7047 §3.2: schemas written before "isRoot" existed had no garbage
  // collection, so when no table claims to be root, every table is.
  let anyRoot = false;
  for (const t of tables.values()) anyRoot ||= t.isRoot;
  if (!anyRoot) for (const t of tables.values()) t.isRoot = true;

  for (const t of tables.values()) {
    for (const c of t.columns.values()) {
      for (const base of [c.type.key, c.type.value]) {
        if (base?.refTable !== undefined && !tables.has(base.refTable)) {
          throw new SchemaError(`${t.name}.${c.name}: refTable "${base.refTable}" is not a table of ${name}`);
        }
      }
    }
  }

  const schema: DatabaseSchema = { name, version: version ?? '', tables };
  if (cksum !== undefined) schema.cksum = cksum;
  return schema;
}

export function getTable(schema: DatabaseSchema, table: string): TableSchema {
  const t = schema.tables.get(table);
  if (!t) throw new SchemaError(`unknown table ${table} in database ${schema.name}`);
  return t;
}

export function getColumn(table: TableSchema, column: string): ColumnSchema {
  const c = table.columns.get(column);
  // A CodecError: callers hit this with a column name they wrote, not with a bad schema.
  if (!c) throw new CodecError('unknown column', { table: table.name, column });
  return c;
}

function parseTable(name: string, json: unknown): TableSchema {
  const t = object(json, `table ${name}`);
  const columnsJson = object(member(t, 'columns'), `table ${name}: "columns"`);
  const names = Object.keys(columnsJson);
  if (names.length === 0) throw new SchemaError(`table ${name}: a table must have at least one column`);

  const columns = new Map<string, ColumnSchema>();
  // Every row has these (RFC 7047 §3.2); they cannot be written, hence not mutable.
  columns.set('_uuid', implicitColumn('_uuid'));
  columns.set('_version', implicitColumn('_version'));
  for (const columnName of names) {
    // Names starting with "_" are reserved and would shadow the implicit columns.
    if (!ID.test(columnName) || columnName.startsWith('_')) {
      throw new SchemaError(`${name}.${columnName}: invalid column name (must be an identifier not starting with "_")`);
    }
    columns.set(columnName, parseColumn(name, columnName, columnsJson[columnName]));
  }

  const isRoot = member(t, 'isRoot') ?? false;
  if (typeof isRoot !== 'boolean') throw new SchemaError(`table ${name}: "isRoot" must be a boolean`);

  const table: TableSchema = { name, columns, isRoot, indexes: [] };

  const maxRows = member(t, 'maxRows');
  if (maxRows !== undefined) {
    if (!Number.isSafeInteger(maxRows) || (maxRows as number) < 1) {
      throw new SchemaError(`table ${name}: "maxRows" must be an integer of at least 1`);
    }
    table.maxRows = maxRows as number;
  }

  const indexes = member(t, 'indexes');
  if (indexes !== undefined) {
    if (!Array.isArray(indexes)) throw new SchemaError(`table ${name}: "indexes" must be an array`);
    for (const index of indexes as unknown[]) {
      if (!Array.isArray(index) || index.length === 0) {
        throw new SchemaError(`table ${name}: each index must be a non-empty array of column names`);
      }
      const cols: string[] = [];
      for (const c of index as unknown[]) {
        if (typeof c !== 'string' || !Object.hasOwn(columnsJson, c)) {
          throw new SchemaError(`table ${name}: index ${JSON.stringify(index)} names an unknown column`);
        }
        cols.push(c);
      }
      table.indexes.push(cols);
    }
  }
  return table;
}

function implicitColumn(name: string): ColumnSchema {
  return { name, type: { key: { type: 'uuid' }, min: 1, max: 1 }, ephemeral: false, mutable: false };
}

function parseColumn(table: string, name: string, json: unknown): ColumnSchema {
  const where = `${table}.${name}`;
  const c = object(json, where);
  const typeJson = member(c, 'type');
  if (typeJson === undefined) throw new SchemaError(`${where}: "type" is missing`);
  const type = parseType(where, typeJson);

  const ephemeral = member(c, 'ephemeral') ?? false;
  if (typeof ephemeral !== 'boolean') throw new SchemaError(`${where}: "ephemeral" must be a boolean`);
  const mutableJson = member(c, 'mutable') ?? true;
  if (typeof mutableJson !== 'boolean') throw new SchemaError(`${where}: "mutable" must be a boolean`);
  // As in ovsdb-server: a weak reference changes by itself when its target is
  // deleted, so it can never be immutable whatever the schema says.
  const mutable = mutableJson || type.key.refType === 'weak' || type.value?.refType === 'weak';

  return { name, type, ephemeral, mutable };
}

function parseType(where: string, json: unknown): ColumnType {
  if (typeof json === 'string') return { key: parseBase(where, json), min: 1, max: 1 };
  const t = object(json, `${where}: type`);

  const keyJson = member(t, 'key');
  if (keyJson === undefined) throw new SchemaError(`${where}: type has no "key"`);
  const key = parseBase(`${where} key`, keyJson);
  const valueJson = member(t, 'value');
  const value = valueJson === undefined ? undefined : parseBase(`${where} value`, valueJson);

  const minJson = member(t, 'min') ?? 1;
  // ovsdb-server requires min <= 1 <= max: "min" says whether the column may be empty.
  if (minJson !== 0 && minJson !== 1) {
    throw new SchemaError(`${where}: "min" must be 0 or 1, not ${JSON.stringify(minJson)}`);
  }
  const min: number = minJson;
  const maxJson = member(t, 'max') ?? 1;
  let max: number;
  if (maxJson === 'unlimited') max = Infinity;
  else if (typeof maxJson === 'number' && Number.isInteger(maxJson) && maxJson >= 1 && maxJson < UINT_MAX) max = maxJson;
  else throw new SchemaError(`${where}: "max" must be a positive integer or "unlimited", not ${JSON.stringify(maxJson)}`);

  const type: ColumnType = { key, min, max };
  if (value) type.value = value;
  return type;
}

function parseBase(where: string, json: unknown): BaseType {
  if (typeof json === 'string') return { type: atomicType(where, json) };
  const b = object(json, where);
  const typeName = member(b, 'type');
  if (typeof typeName !== 'string') throw new SchemaError(`${where}: base type has no "type" string`);
  const type = atomicType(where, typeName);
  const base: BaseType = { type };

  for (const [m, applies] of TYPED_MEMBERS) {
    if (applies !== type && member(b, m) !== undefined) {
      throw new SchemaError(`${where}: "${m}" is not allowed for type ${type}`);
    }
  }

  const enumJson = member(b, 'enum');
  if (enumJson !== undefined) base.enum = parseEnum(where, type, enumJson);

  switch (type) {
    case 'integer':
      // Bounds are int64 in OVS and are only informative here (the server
      // enforces them), so a bound beyond 2^53 is kept, rounded.
      base.minInteger = optionalNumber(where, b, 'minInteger', Number.isInteger);
      base.maxInteger = optionalNumber(where, b, 'maxInteger', Number.isInteger);
      checkOrder(where, base.minInteger, base.maxInteger, 'minInteger', 'maxInteger');
      break;
    case 'real':
      base.minReal = optionalNumber(where, b, 'minReal', Number.isFinite);
      base.maxReal = optionalNumber(where, b, 'maxReal', Number.isFinite);
      checkOrder(where, base.minReal, base.maxReal, 'minReal', 'maxReal');
      break;
    case 'string': {
      const isLength = (n: number) => Number.isInteger(n) && n >= 0 && n <= UINT_MAX;
      base.minLength = optionalNumber(where, b, 'minLength', isLength);
      base.maxLength = optionalNumber(where, b, 'maxLength', isLength);
      checkOrder(where, base.minLength, base.maxLength, 'minLength', 'maxLength');
      break;
    }
    case 'uuid': {
      const refTable = member(b, 'refTable');
      const refType = member(b, 'refType');
      if (refTable !== undefined) {
        if (typeof refTable !== 'string' || !ID.test(refTable)) {
          throw new SchemaError(`${where}: "refTable" must be a table name`);
        }
        base.refTable = refTable;
        if (refType !== undefined && refType !== 'strong' && refType !== 'weak') {
          throw new SchemaError(`${where}: "refType" must be "strong" or "weak", not ${JSON.stringify(refType)}`);
        }
        base.refType = refType ?? 'strong';
      } else if (refType !== undefined) {
        throw new SchemaError(`${where}: "refType" without "refTable"`);
      }
      break;
    }
    case 'boolean':
      break;
  }
  // Keep descriptors minimal so that they compare and print cleanly.
  for (const k of Object.keys(base) as (keyof BaseType)[]) if (base[k] === undefined) delete base[k];
  return base;
}

function parseEnum(where: string, type: AtomicType, json: unknown): Atom[] {
  // An enum is an RFC 7047 <set>: a bare atom when it has one element.
  const elements: unknown[] =
    Array.isArray(json) && json.length === 2 && json[0] === 'set' && Array.isArray(json[1]) ? (json[1] as unknown[]) : [json];
  if (elements.length === 0) throw new SchemaError(`${where}: "enum" must not be empty`);
  const out: Atom[] = [];
  const seen = new Set<Atom>();
  for (const e of elements) {
    const atom = enumAtom(where, type, e);
    if (seen.has(atom)) throw new SchemaError(`${where}: "enum" contains ${JSON.stringify(e)} twice`);
    seen.add(atom);
    out.push(atom);
  }
  return out;
}

function enumAtom(where: string, type: AtomicType, json: unknown): Atom {
  switch (type) {
    case 'string':
      if (typeof json === 'string') return json;
      break;
    case 'boolean':
      if (typeof json === 'boolean') return json;
      break;
    case 'integer':
      if (typeof json === 'number' && Number.isSafeInteger(json)) return json;
      break;
    case 'real':
      if (typeof json === 'number' && Number.isFinite(json)) return json;
      break;
    case 'uuid':
      if (Array.isArray(json) && json.length === 2 && json[0] === 'uuid' && typeof json[1] === 'string' && UUID.test(json[1])) {
        return json[1].toLowerCase();
      }
      break;
  }
  throw new SchemaError(`${where}: "enum" value ${JSON.stringify(json)} is not a ${type}`);
}

function optionalNumber(where: string, b: JsonObject, name: string, valid: (n: number) => boolean): number | undefined {
  const v = member(b, name);
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !valid(v)) throw new SchemaError(`${where}: invalid "${name}" ${JSON.stringify(v)}`);
  return v;
}

function checkOrder(where: string, min: number | undefined, max: number | undefined, minName: string, maxName: string): void {
  if (min !== undefined && max !== undefined && min > max) {
    throw new SchemaError(`${where}: "${minName}" ${min} exceeds "${maxName}" ${max}`);
  }
}

function atomicType(where: string, name: string): AtomicType {
  if (!ATOMIC_TYPES.has(name)) throw new SchemaError(`${where}: unknown atomic type "${name}"`);
  return name as AtomicType;
}

function object(json: unknown, what: string): JsonObject {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new SchemaError(`${what}: expected a JSON object`);
  }
  return json as JsonObject;
}

/** An own member only: `member(o, "constructor")` must not find Object.prototype's. */
function member(o: JsonObject, name: string): unknown {
  return Object.hasOwn(o, name) ? o[name] : undefined;
}
