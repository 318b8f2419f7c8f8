/**
 * Which Address_Set records a switch's warm ports (warm-ports.ts), and the
 * way back. On a network of our IPAM it is the pool itself (pools.ts). On a
 * network of Docker's IPAM it is a "port set" of the switch's own, which
 * holds nothing but warm ports' addresses: Docker's IPAM keeps its
 * allocations to itself, and the set gives the same compare-and-swap
 * states without a write to the Logical_Switch_Port (which costs
 * ovn-northd < 23.09 a full recompute; an Address_Set write does not).
 */
import type { Replica, Row, Transaction } from '../ovsdb/index.js';
import { externalIds } from './external-ids.js';
import { Keys, OWNER } from './keys.js';
import { words } from './records.js';

const PORT_SET_PREFIX = 'docker_ports_';

/** The port set of a switch (named after the switch, whose name is its network's id). */
export function portSetName(switchName: string): string {
  return `${PORT_SET_PREFIX}${switchName}`;
}

export function isPortSet(setName: string): boolean {
  return setName.startsWith(PORT_SET_PREFIX);
}

/** The switch whose warm ports the set `setName` records: the pool's switch, or the port set's. */
export function switchOfWarmSet(replica: Replica, setName: string): Row | undefined {
  if (isPortSet(setName)) return replica.findOne('Logical_Switch', 'name', setName.slice(PORT_SET_PREFIX.length));
  return replica.findByExternalId('Logical_Switch', Keys.poolV4, setName)[0];
}

/** The Address_Set recording the warm ports of `chassis` on a switch (see eligiblePools), if it may have any. */
export function warmSetOfSwitch(ls: Row, chassis: string): string | undefined {
  const ids = externalIds(ls);
  if (ids.get(Keys.owner) !== OWNER || ids.has(Keys.poolV6) || ids.has(Keys.ipv6Subnets)) return undefined;
  const local = [...ids].some(([key, value]) => key.startsWith(Keys.networkPrefix) && value === chassis);
  if (!local) return undefined;
  const pool = ids.get(Keys.poolV4);
  if (pool) return pool;
  return onlyIPv4Subnet(ls) ? portSetName(String(ls.name)) : undefined;
}

/** The switch's one IPv4 subnet ("10.1.0.0/24"); undefined when it has none or several. */
export function onlyIPv4Subnet(ls: Row): string | undefined {
  const subnets = words(externalIds(ls).get(Keys.ipv4Subnets));
  return subnets.length === 1 ? subnets[0] : undefined;
}

/**
 * Set each key of `holders` to its holder in the port set `setName` of
 * switch `ls`, making the set if it does not exist yet (Address_Set names
 * are unique: a concurrent maker makes the transaction re-run and find it).
 * The insert mutation leaves a key someone else holds as it is.
 */
export function holdInPortSet(tx: Transaction, setName: string, set: Row | undefined, ls: Row, holders: ReadonlyMap<string, string>): void {
  if (set) {
    tx.mutate('Address_Set', [['_uuid', '==', set._uuid]], [['external_ids', 'insert', new Map(holders)]]);
    return;
  }
  tx.insert('Address_Set', {
    name: setName,
    external_ids: new Map([
      [Keys.owner, OWNER],
      [Keys.portsOf, String(ls.name)],
      ...holders,
    ]),
  });
}
