/**
 * The DNS row of a switch: OVN answers its records for every port of the
 * switch. A record belongs to the ports that publish its name (each port
 * lists its names in external_ids, Keys.dnsNames): its value is the union of
 * their addresses, so two containers with one name (on two hosts) both
 * answer, and one leaving keeps the other's. Only a switch that spans hosts
 * gets a row: on one host, Docker's embedded DNS answers already, and every
 * change to a DNS row costs ovn-northd a full recompute.
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
  // No row, nothing to drop: removing a port never creates one (another port publishing the same name would).
  if (!ownedDnsRow(replica, ls)) return;
  writeDnsRecords(tx, replica, ls, new Set(publishedNames(port)), new Map([[port._uuid, []]]));
}

/**
 * Whether a port of the switch belongs to a host other than `chassis`: an
 * endpoint's or a warm port's (a host's warm ports appear with its network,
 * before its first container). The gateway localport is every host's.
 */
export function spansHosts(replica: Replica, ls: Row, chassis: string): boolean {
  for (const uuid of Array.isArray(ls.ports) ? ls.ports : []) {
    const port = replica.get('Logical_Switch_Port', String(uuid));
    if (port && isOtherHosts(port, chassis)) return true;
  }
  return false;
}

/** A port of the driver's on another host than `chassis`. */
export function isOtherHosts(port: Row, chassis: string): boolean {
  const ids = externalIds(port);
  if (ids.get(Keys.role) === 'gateway') return false;
  return [ids.get(Keys.chassis), ids.get(Keys.warm)].some((c) => c !== undefined && c !== '' && c !== chassis);
}

/**
 * Make the switch's DNS row hold the records of every name its ports
 * publish, as they will be once this transaction commits (`changed` as for
 * writeDnsRecords); creates the row when there is none and a record to put
 * in it. Returns whether it wrote: nothing when the row holds them already.
 */
export function syncDnsRecords(tx: Transaction, replica: Replica, ls: Row, changed: ReadonlyMap<string, readonly string[]> = new Map()): boolean {
  return writeRecords(tx, replica, ls, undefined, changed);
}

/** Whether syncDnsRecords would write: the row misses a record, holds a stale one, or is missing with records to hold. */
export function dnsRecordsDiffer(replica: Replica, ls: Row): boolean {
  const records = recordsOf(replica, ls, undefined, new Map());
  const dns = ownedDnsRow(replica, ls);
  if (!dns) return records.size > 0;
  const current = currentRecords(dns);
  return current.size !== records.size || [...records].some(([name, value]) => current.get(name) !== value);
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
  writeRecords(tx, replica, ls, names, changed);
}

/** Records of `names` (all names when undefined) from the ports of the switch, `changed` replacing those in the replica. */
function recordsOf(replica: Replica, ls: Row, names: ReadonlySet<string> | undefined, changed: ReadonlyMap<string, readonly string[]>): Map<string, string> {
  const addresses = new Map<string, Set<string>>();
  for (const uuid of Array.isArray(ls.ports) ? ls.ports : []) {
    const port = replica.get('Logical_Switch_Port', String(uuid));
    if (!port) continue;
    const ids = externalIds(port);
    const ips = [ids.get(Keys.ipv4), ids.get(Keys.ipv6)].filter((c): c is string => Boolean(c)).map(stripPrefix);
    for (const name of changed.get(port._uuid) ?? publishedNames(port)) {
      if (names && !names.has(name)) continue;
      const set = addresses.get(name) ?? new Set<string>();
      for (const ip of ips) set.add(ip);
      addresses.set(name, set);
    }
  }
  // Sorted, so that publishing the same names again writes the same value (no DNS row change).
  return new Map([...addresses].filter(([, ips]) => ips.size > 0).map(([name, ips]) => [name, [...ips].sort().join(' ')]));
}

function currentRecords(dns: Row): Map<string, string> {
  return dns.records instanceof Map ? (dns.records as Map<string, string>) : new Map<string, string>();
}

/** Rewrite the records of `names` (every record when undefined); returns whether it wrote. */
function writeRecords(
  tx: Transaction,
  replica: Replica,
  ls: Row,
  names: ReadonlySet<string> | undefined,
  changed: ReadonlyMap<string, readonly string[]>,
): boolean {
  const records = recordsOf(replica, ls, names, changed);
  const dns = ownedDnsRow(replica, ls);
  if (!dns) {
    if (records.size === 0) return false;
    // One DNS row per switch; the guard makes a concurrent creator retry and find it.
    tx.verify('Logical_Switch', ls, ['dns_records']);
    const row = tx.insert('DNS', { records, external_ids: new Map([[Keys.owner, OWNER]]) });
    tx.mutate('Logical_Switch', [['_uuid', '==', ls._uuid]], [['dns_records', 'insert', [row]]]);
    return true;
  }
  // Records were rebuilt from this replica's ports: a host publishing or removing a name meanwhile makes this re-run on a fresh one.
  tx.verify('DNS', dns, ['records']);
  const current = currentRecords(dns);
  const stale = [...current.keys()].filter((name) => (!names || names.has(name)) && current.get(name) !== records.get(name));
  const fresh = new Map([...records].filter(([name, value]) => current.get(name) !== value));
  if (stale.length === 0 && fresh.size === 0) return false;
  // Delete first: a map insert leaves an existing key's value as it is.
  const mutations: Mutation[] = [];
  if (stale.length) mutations.push(['records', 'delete', stale]);
  if (fresh.size) mutations.push(['records', 'insert', fresh]);
  tx.mutate('DNS', [['_uuid', '==', dns._uuid]], mutations);
  return true;
}
