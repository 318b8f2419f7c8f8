/**
 * What the tests of the OVN model read back: rows as the server holds them
 * once a transaction returned (not a replica, which may lag or be the very
 * thing under test), and waits for a host's replica to catch up.
 */
import type { Condition, OvsdbClient } from '../../src/ovsdb/index.js';

/** Rows of `table` matching `where`, read from the server. */
export async function select(nb: OvsdbClient, table: string, where: Condition[], columns: string[]): Promise<Record<string, unknown>[]> {
  const tx = nb.newTransaction();
  tx.select(table, where, columns);
  return (await nb.transact(tx)).rowsOf(0);
}

/** One row by name, or undefined. */
export async function rowNamed(nb: OvsdbClient, table: string, name: string, columns: string[]): Promise<Record<string, unknown> | undefined> {
  return (await select(nb, table, [['name', '==', name]], columns))[0];
}

/** An Address_Set's (or any named row's) external_ids, read from the server; empty when there is no such row. */
export async function externalIdsOf(nb: OvsdbClient, table: string, name: string): Promise<Map<string, string>> {
  return wireMap((await rowNamed(nb, table, name, ['external_ids']))?.external_ids);
}

/** The elements of an OVSDB set in wire form (a lone atom is a set of one). */
export function wireSet(datum: unknown): unknown[] {
  if (Array.isArray(datum) && datum[0] === 'set') return datum[1] as unknown[];
  return datum === undefined ? [] : [datum];
}

/** An OVSDB string map in wire form. */
export function wireMap(datum: unknown): Map<string, string> {
  return new Map(Array.isArray(datum) && datum[0] === 'map' ? (datum[1] as [string, string][]) : []);
}

/** Resolve once `probe` answers something on `nb`'s replica. */
export function until<T>(nb: OvsdbClient, probe: () => T | undefined, what = 'replica update'): Promise<T> {
  return nb.replica.waitFor(probe, { timeoutMs: 5000, what });
}
