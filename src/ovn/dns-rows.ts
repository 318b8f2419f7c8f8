/**
 * The DNS row of a switch: OVN answers its records for every port of the
 * switch. A record belongs to the ports that publish its name (each port
 * lists its names in external_ids, Keys.dnsNames): its value is the union of
 * their addresses, so two containers with one name (on two hosts) both
 * answer, and one leaving keeps the other's.
 */
import type { Mutation, Replica, Row, Transaction } from '../ovsdb/index.js';
import { stripPrefix } from '../net/addressing.js';
import { externalIds } from './external-ids.js';
import { Keys, OWNER } from './keys.js';
import { words } from './records.js';

/** What OVN's DNS answers for: host names, letters, digits, '-', '_' and '.'. */
export const DNS_NAME = /^[a-z0-9_]([a-z0-9_.-]{0,251}[a-z0-9_])?$/;

export function ownedDnsRow(replica: Replica, ls: Row): Row | undefined {
  for (const uuid of Array.isArray(ls.dns_records) ? ls.dns_records : []) {
    const row = replica.get('DNS', String(uuid));
    if (row && externalIds(row).get(Keys.owner) === OWNER) return row;
  }
  return undefined;
}

/** The names a port published. */
export function publishedNames(port: Row): string[] {
  return words(externalIds(port).get(Keys.dnsNames));
}

/** Drop the names a port published from its switch's DNS row (in the transaction that removes the port or its names). */
export function removeDnsNames(tx: Transaction, replica: Replica, ls: Row, port: Row): void {
  writeDnsRecords(tx, replica, ls, new Set(publishedNames(port)), new Map([[port._uuid, []]]));
}

/**
 * Rewrite the records of `names` in the switch's DNS row from the ports of
 * the switch that publish them, as they will be once this transaction
 * commits: `names` of ports it changes (port uuid -> their names; [] for a
 * port that goes or publishes nothing any more) replace those in the replica.
 */
export function writeDnsRecords(
  tx: Transaction,
  replica: Replica,
  ls: Row,
  names: ReadonlySet<string>,
  changed: ReadonlyMap<string, readonly string[]>,
): void {
  if (names.size === 0) return;
  const addresses = new Map<string, Set<string>>();
  for (const uuid of Array.isArray(ls.ports) ? ls.ports : []) {
    const port = replica.get('Logical_Switch_Port', String(uuid));
    if (!port) continue;
    const ids = externalIds(port);
    const ips = [ids.get(Keys.ipv4), ids.get(Keys.ipv6)].filter((c): c is string => Boolean(c)).map(stripPrefix);
    for (const name of changed.get(port._uuid) ?? publishedNames(port)) {
      if (!names.has(name)) continue;
      const set = addresses.get(name) ?? new Set<string>();
      for (const ip of ips) set.add(ip);
      addresses.set(name, set);
    }
  }
  // Sorted, so that publishing the same names again writes the same value (no DNS row change).
  const records = new Map([...addresses].filter(([, ips]) => ips.size > 0).map(([name, ips]) => [name, [...ips].sort().join(' ')]));
  const dns = ownedDnsRow(replica, ls);
  if (!dns) {
    if (records.size === 0) return;
    // One DNS row per switch; the guard makes a concurrent creator retry and find it.
    tx.verify('Logical_Switch', ls, ['dns_records']);
    const row = tx.insert('DNS', { records, external_ids: new Map([[Keys.owner, OWNER]]) });
    tx.mutate('Logical_Switch', [['_uuid', '==', ls._uuid]], [['dns_records', 'insert', [row]]]);
    return;
  }
  // Records were rebuilt from this replica's ports: a host publishing or removing a name meanwhile makes this re-run on a fresh one.
  tx.verify('DNS', dns, ['records']);
  const current = dns.records instanceof Map ? (dns.records as Map<string, string>) : new Map<string, string>();
  const stale = [...names].filter((name) => current.has(name) && current.get(name) !== records.get(name));
  const fresh = new Map([...records].filter(([name, value]) => current.get(name) !== value));
  if (stale.length === 0 && fresh.size === 0) return;
  // Delete first: a map insert leaves an existing key's value as it is.
  const mutations: Mutation[] = [];
  if (stale.length) mutations.push(['records', 'delete', stale]);
  if (fresh.size) mutations.push(['records', 'insert', fresh]);
  tx.mutate('DNS', [['_uuid', '==', dns._uuid]], mutations);
}
