/**
 * Conversion between RFC 7047 wire values and the TypeScript values of
 * types.ts. The wire form is ambiguous on its own (a one-element set is sent
 * as a bare atom, and a uuid atom is itself a JSON array), so every function
 * here is driven by the column's type from the schema.
 *
 * Decoding is on the hot path of initial monitor dumps (tens of thousands of
 * rows), so the decoders avoid intermediate objects where they can.
 */

import { CodecError } from './errors.js';
import {
  NamedUuid,
  type Atom,
  type BaseType,
  type ColumnType,
  type Datum,
  type EncodableAtom,
  type EncodableDatum,
  type Row,
  type TableSchema,
} from './types.js';

export const ZERO_UUID = '00000000-0000-0000-0000-000000000000';

const UUID_LOWER = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const UUID_ANY_CASE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// ovsdb-server requires a uuid-name to be an <id>; catching it here names the column.
const ID = /^[A-Za-z_][A-Za-z0-9_]*$/;
// Below this size a nested loop beats building a Set for duplicate checks.
const SMALL = 8;

// ---------------------------------------------------------------- atoms

export function decodeAtom(base: BaseType, json: unknown): Atom {
  switch (base.type) {
    case 'string':
      if (typeof json === 'string') return json;
      break;
    case 'integer':
      if (typeof json === 'number' && Number.isInteger(json)) {
        // JSON.parse has already rounded anything beyond 2^53: refuse rather than cache a wrong value.
        if (!Number.isSafeInteger(json)) throw new CodecError(`integer ${json} is beyond ±2^53 and lost precision`);
        return json;
      }
      break;
    case 'real':
      // The server may write a real that happens to be integral as a JSON integer.
      if (typeof json === 'number' && Number.isFinite(json)) return json;
      break;
    case 'boolean':
      if (typeof json === 'boolean') return json;
      break;
    case 'uuid':
      if (Array.isArray(json) && json.length === 2 && json[0] === 'uuid') {
        const u = normaliseUuid(json[1]);
        if (u !== undefined) return u;
      }
      break;
  }
  throw new CodecError(`expected ${base.type}, got ${show(json)}`);
}

export function encodeAtom(base: BaseType, atom: EncodableAtom): unknown {
  if (atom instanceof NamedUuid) {
    if (base.type !== 'uuid') throw new CodecError(`expected ${base.type}, got named-uuid ${atom.name}`);
    if (!ID.test(atom.name)) throw new CodecError(`invalid uuid-name ${show(atom.name)}`);
    return ['named-uuid', atom.name];
  }
  switch (base.type) {
    case 'string':
      if (typeof atom === 'string') return atom;
      break;
    case 'integer':
      if (typeof atom === 'number' && Number.isInteger(atom)) {
        if (!Number.isSafeInteger(atom)) throw new CodecError(`integer ${atom} is beyond ±2^53 and cannot be sent exactly`);
        return atom;
      }
      break;
    case 'real':
      // NaN and ±Infinity would serialise as null.
      if (typeof atom === 'number' && Number.isFinite(atom)) return atom;
      break;
    case 'boolean':
      if (typeof atom === 'boolean') return atom;
      break;
    case 'uuid': {
      const u = normaliseUuid(atom);
      if (u !== undefined) return ['uuid', u];
      break;
    }
  }
  throw new CodecError(`expected ${base.type}, got ${show(atom)}`);
}

// ---------------------------------------------------------------- datums

export function decodeDatum(type: ColumnType, json: unknown): Datum {
  if (type.value !== undefined) {
    const map = decodeMap(type.key, type.value, json);
    checkCount(type, map.size);
    return map;
  }
  if (isSetForm(json)) {
    const elements = json[1];
    checkCount(type, elements.length);
    if (type.max === 1) {
      return elements.length === 0 ? null : decodeAtom(type.key, elements[0]);
    }
    return decodeSetElements(type.key, elements);
  }
  // A bare atom: the server's form for a set with exactly one element.
  checkCount(type, 1);
  const atom = decodeAtom(type.key, json);
  return type.max === 1 ? atom : [atom];
}

export function encodeDatum(type: ColumnType, value: EncodableDatum, options?: { relaxed?: boolean }): unknown {
  const relaxed = options?.relaxed === true;
  if (type.value !== undefined) {
    if (!(value instanceof Map)) throw new CodecError(`expected a Map, got ${show(value)}`);
    if (!relaxed) checkCount(type, value.size);
    const pairs: unknown[] = [];
    // Map keys are already unique, except uuids that differ only in case or
    // distinct NamedUuid objects with the same name; the server refuses both.
    const seen = type.key.type === 'uuid' ? new Set<string>() : undefined;
    for (const [k, v] of value) {
      const key = encodeAtom(type.key, k);
      if (seen) checkFresh(seen, identity(key), k);
      pairs.push([key, encodeAtom(type.value, v)]);
    }
    return ['map', pairs];
  }

  if (value instanceof Map) throw new CodecError(`expected ${describeType(type)}, got a Map`);
  if (!Array.isArray(value)) {
    if (value === null) {
      if (!relaxed && type.min > 0) throw new CodecError(`expected ${describeType(type)}, got null`);
      return ['set', []];
    }
    if (type.max === 1) return encodeAtom(type.key, value);
    if (!relaxed) throw new CodecError(`expected an array for ${describeType(type)}, got ${show(value)}`);
    return ['set', [encodeAtom(type.key, value)]];
  }
  if (!relaxed) {
    if (type.max === 1) throw new CodecError(`expected a single value for ${describeType(type)}, got an array`);
    checkCount(type, value.length);
  }
  const out: unknown[] = new Array(value.length);
  for (let i = 0; i < value.length; i++) out[i] = encodeAtom(type.key, value[i] as EncodableAtom);
  if (out.length > 1) {
    const seen = new Set<unknown>();
    for (let i = 0; i < out.length; i++) checkFresh(seen, identity(out[i]), value[i]);
  }
  return ['set', out];
}

export function defaultDatum(type: ColumnType): Datum {
  if (type.value !== undefined) {
    const map = new Map<Atom, Atom>();
    if (type.min > 0) map.set(defaultAtom(type.key), defaultAtom(type.value));
    return map;
  }
  if (type.max === 1) return type.min > 0 ? defaultAtom(type.key) : null;
  return type.min > 0 ? [defaultAtom(type.key)] : [];
}

function defaultAtom(base: BaseType): Atom {
  switch (base.type) {
    case 'integer':
    case 'real':
      return 0;
    case 'boolean':
      return false;
    case 'string':
      return '';
    case 'uuid':
      return ZERO_UUID;
  }
}

// ---------------------------------------------------------------- rows

export function decodeRow(table: TableSchema, uuid: string, json: unknown, options?: { base?: Row }): Row {
  const rowUuid = normaliseUuid(uuid);
  if (rowUuid === undefined) throw new CodecError(`invalid row uuid ${show(uuid)}`, { table: table.name });
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new CodecError(`row ${rowUuid}: expected a JSON object, got ${show(json)}`, { table: table.name });
  }
  const src = json as Record<string, unknown>;
  // Null prototype: column names such as "constructor" must read as columns only.
  const out = Object.create(null) as Record<string, Datum>;
  out._uuid = rowUuid;

  let column = '';
  try {
    for (column of Object.keys(src)) {
      const schema = table.columns.get(column);
      if (schema === undefined) throw new CodecError('unknown column');
      if (column === '_uuid') {
        if (decodeAtom(schema.type.key, src[column]) !== rowUuid) throw new CodecError(`does not match row uuid ${rowUuid}`);
        continue;
      }
      out[column] = decodeDatum(schema.type, src[column]);
    }
  } catch (err) {
    throw withContext(err, table.name, column);
  }

  const base = options?.base;
  for (const [name, schema] of table.columns) {
    if (out[name] !== undefined) continue;
    const inherited = base?.[name];
    if (inherited !== undefined) out[name] = inherited;
    // A made-up _version would make a later `wait` on it fail or, worse, pass
    // wrongly; leave it out unless the server sent it.
    else if (name !== '_version') out[name] = defaultDatum(schema.type);
  }
  return out as Row;
}

export function encodeRow(table: TableSchema, row: Record<string, EncodableDatum>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const column of Object.keys(row)) {
    if (column === '_uuid' || column === '_version') {
      throw new CodecError('is maintained by the server and cannot be written', { table: table.name, column });
    }
    const schema = table.columns.get(column);
    if (schema === undefined) throw new CodecError('unknown column', { table: table.name, column });
    try {
      out[column] = encodeDatum(schema.type, row[column] as EncodableDatum);
    } catch (err) {
      throw withContext(err, table.name, column);
    }
  }
  return out;
}

// ---------------------------------------------------------------- diffs

export function applyDiff(type: ColumnType, old: Datum, diffJson: unknown): Datum {
  // ovsdb_datum_diff sends the new value itself for columns that hold at most one element.
  if (type.max === 1) return decodeDatum(type, diffJson);

  if (type.value !== undefined) {
    const diff = decodeMap(type.key, type.value, diffJson);
    const next = new Map<Atom, Atom>(oldMap(old));
    for (const [k, v] of diff) {
      const current = next.get(k);
      if (current === undefined) next.set(k, v);
      else if (current === v) next.delete(k);
      else next.set(k, v);
    }
    checkCount(type, next.size);
    return next;
  }

  const diff = isSetForm(diffJson) ? decodeSetElements(type.key, diffJson[1]) : [decodeAtom(type.key, diffJson)];
  const next = new Set<Atom>(oldSet(old));
  for (const atom of diff) {
    if (!next.delete(atom)) next.add(atom);
  }
  checkCount(type, next.size);
  return [...next];
}

export function datumEquals(a: Datum, b: Datum): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    // Sets have no duplicates, so equal length plus inclusion is equality.
    if (a.length <= SMALL) {
      for (const x of a) if (!b.includes(x)) return false;
      return true;
    }
    const other = new Set(b);
    for (const x of a) if (!other.has(x)) return false;
    return true;
  }
  if (a instanceof Map) {
    if (!(b instanceof Map) || a.size !== b.size) return false;
    for (const [k, v] of a) {
      if (b.get(k) !== v) return false;
    }
    return true;
  }
  return false;
}

// ---------------------------------------------------------------- helpers

function isSetForm(json: unknown): json is ['set', unknown[]] {
  if (!Array.isArray(json) || json[0] !== 'set') return false;
  if (json.length !== 2 || !Array.isArray(json[1])) throw new CodecError(`malformed set ${show(json)}`);
  return true;
}

function decodeSetElements(key: BaseType, elements: unknown[]): Atom[] {
  const n = elements.length;
  const out: Atom[] = new Array<Atom>(n);
  for (let i = 0; i < n; i++) out[i] = decodeAtom(key, elements[i]);
  if (n > 1 && hasDuplicates(out)) throw new CodecError(`set contains a duplicate: ${show(elements)}`);
  return out;
}

function decodeMap(key: BaseType, value: BaseType, json: unknown): Map<Atom, Atom> {
  if (!Array.isArray(json) || json.length !== 2 || json[0] !== 'map' || !Array.isArray(json[1])) {
    throw new CodecError(`expected ["map",[...]], got ${show(json)}`);
  }
  const pairs = json[1] as unknown[];
  const map = new Map<Atom, Atom>();
  for (const pair of pairs) {
    if (!Array.isArray(pair) || pair.length !== 2) throw new CodecError(`malformed map pair ${show(pair)}`);
    map.set(decodeAtom(key, pair[0]), decodeAtom(value, pair[1]));
  }
  if (map.size !== pairs.length) throw new CodecError(`map contains a duplicate key: ${show(json)}`);
  return map;
}

function hasDuplicates(atoms: Atom[]): boolean {
  const n = atoms.length;
  if (n <= SMALL) {
    for (let i = 1; i < n; i++) {
      for (let j = 0; j < i; j++) if (atoms[i] === atoms[j]) return true;
    }
    return false;
  }
  return new Set(atoms).size !== n;
}

function oldSet(old: Datum): Atom[] {
  // A missing column (null) of a set type is the empty set.
  if (old === null) return [];
  if (Array.isArray(old)) return old;
  throw new CodecError(`cannot apply a set diff to ${show(old)}`);
}

function oldMap(old: Datum): Map<Atom, Atom> | [] {
  if (old === null) return [];
  if (old instanceof Map) return old;
  throw new CodecError(`cannot apply a map diff to ${show(old)}`);
}

function checkCount(type: ColumnType, n: number): void {
  if (n < type.min || n > type.max) {
    throw new CodecError(`expected ${describeCount(type)}, got ${n}`);
  }
}

function describeCount(type: ColumnType): string {
  const what = type.value !== undefined ? 'pair' : 'value';
  if (type.min === type.max) return `exactly ${type.min} ${what}${type.min === 1 ? '' : 's'}`;
  if (type.max === Infinity) return `at least ${type.min} ${what}s`;
  return `${type.min} to ${type.max} ${what}s`;
}

function describeType(type: ColumnType): string {
  if (type.value !== undefined) return `map of ${type.key.type} to ${type.value.type}`;
  if (type.max === 1) return type.min === 1 ? type.key.type : `optional ${type.key.type}`;
  return `set of ${type.key.type}`;
}

/** What makes two encoded atoms the same value for the server. */
function identity(wire: unknown): unknown {
  // Encoded uuids are ["uuid", lower-case] or ["named-uuid", id]; they cannot collide with each other.
  return Array.isArray(wire) ? `${wire[0] as string}:${wire[1] as string}` : wire;
}

function checkFresh(seen: Set<unknown>, id: unknown, original: unknown): void {
  if (seen.has(id)) throw new CodecError(`duplicate element ${show(original)}`);
  seen.add(id);
}

function normaliseUuid(s: unknown): string | undefined {
  if (typeof s !== 'string') return undefined;
  if (UUID_LOWER.test(s)) return s;
  // The server accepts upper case; keep one spelling so that Map keys and === work.
  return UUID_ANY_CASE.test(s) ? s.toLowerCase() : undefined;
}

function withContext(err: unknown, table: string, column: string): unknown {
  if (err instanceof CodecError && err.context.table === undefined && err.context.column === undefined) {
    return new CodecError(err.message, { table, column });
  }
  return err;
}

function show(value: unknown): string {
  if (value instanceof NamedUuid) return `named-uuid ${value.name}`;
  if (value instanceof Map) return `Map(${value.size})`;
  let s: string | undefined;
  try {
    s = JSON.stringify(value);
  } catch {
    s = undefined;
  }
  if (s === undefined) return String(value);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
