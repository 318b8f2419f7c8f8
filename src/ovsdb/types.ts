/**
 * Schema and value types of RFC 7047, as plain TypeScript.
 *
 * Values on the wire are ambiguous without the schema (a one-element set is a
 * bare atom), so decoding always goes through a ColumnType; see codec.ts.
 */

export type AtomicType = 'integer' | 'real' | 'boolean' | 'string' | 'uuid';

/** A decoded atom. UUIDs are their 36-character lower-case string form. */
export type Atom = string | number | boolean;

/** A reference to a row inserted earlier in the same transaction (`uuid-name`). */
export class NamedUuid {
  constructor(readonly name: string) {}
}

/** An atom as written by a caller: may also reference a row of the same transaction. */
export type EncodableAtom = Atom | NamedUuid;

/**
 * A decoded column value:
 * - exactly one atom (min 1, max 1): the atom
 * - optional atom (min 0, max 1): the atom, or null when empty
 * - set (max > 1): an array of atoms, no duplicates
 * - map (value type present): a Map
 */
export type Datum = Atom | null | Atom[] | Map<Atom, Atom>;

/** A column value as written by a caller (may contain NamedUuid references). */
export type EncodableDatum =
  | EncodableAtom
  | null
  | EncodableAtom[]
  | Map<EncodableAtom, EncodableAtom>;

export interface BaseType {
  type: AtomicType;
  enum?: Atom[];
  minInteger?: number;
  maxInteger?: number;
  minReal?: number;
  maxReal?: number;
  minLength?: number;
  maxLength?: number;
  refTable?: string;
  refType?: 'strong' | 'weak';
}

export interface ColumnType {
  key: BaseType;
  value?: BaseType;
  min: number;
  /** Infinity for "unlimited". */
  max: number;
}

export interface ColumnSchema {
  name: string;
  type: ColumnType;
  ephemeral: boolean;
  mutable: boolean;
}

export interface TableSchema {
  name: string;
  columns: Map<string, ColumnSchema>;
  isRoot: boolean;
  maxRows?: number;
  /** Each index is a list of column names whose values are unique together. */
  indexes: string[][];
}

export interface DatabaseSchema {
  name: string;
  version: string;
  cksum?: string;
  tables: Map<string, TableSchema>;
}

/** A decoded row: every column of the table (defaults filled in), plus `_uuid`. */
export interface Row {
  readonly _uuid: string;
  readonly [column: string]: Datum;
}
