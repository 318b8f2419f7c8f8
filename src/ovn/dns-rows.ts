/** The DNS row of a switch: OVN answers its records for every port of the switch. */
import type { Replica, Row, Transaction } from '../ovsdb/index.js';
import { externalIds } from './external-ids.js';
import { Keys, OWNER } from './keys.js';

/** What OVN's DNS answers for: host names, letters, digits, '-', '_' and '.'. */
export const DNS_NAME = /^[a-z0-9_]([a-z0-9_.-]{0,251}[a-z0-9_])?$/;

export function ownedDnsRow(replica: Replica, ls: Row): Row | undefined {
  for (const uuid of Array.isArray(ls.dns_records) ? ls.dns_records : []) {
    const row = replica.get('DNS', String(uuid));
    if (row && externalIds(row).get(Keys.owner) === OWNER) return row;
  }
  return undefined;
}

/** Drop the names a port published from its switch's DNS row (in the port's delete transaction). */
export function removeDnsNames(tx: Transaction, replica: Replica, ls: Row, port: Row): void {
  const names = (externalIds(port).get(Keys.dnsNames) ?? '').split(' ').filter(Boolean);
  const dns = ownedDnsRow(replica, ls);
  if (names.length && dns) tx.mutate('DNS', [['_uuid', '==', dns._uuid]], [['records', 'delete', names]]);
}

