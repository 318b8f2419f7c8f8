import type { Row } from '../ovsdb/index.js';

/** A row's external_ids column as a string map (empty when the table has none). */
export function externalIds(row: Row): Map<string, string> {
  return row.external_ids instanceof Map ? (row.external_ids as Map<string, string>) : new Map();
}
