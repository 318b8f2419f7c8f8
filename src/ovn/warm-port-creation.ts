/**
 * Where a new warm port goes, and its creation in one NB transaction: on a
 * pool of our IPAM, the lowest free address (the one a request gets next);
 * on a port set, the lowest address Docker's IPAM gives next. Either way,
 * only while enough addresses stay free for endpoints.
 */
import { randomBytes } from 'node:crypto';
import type { OvsdbClient, Replica, Row, Transaction } from '../ovsdb/index.js';
import { freeAddresses, lowestFree } from '../net/addressing.js';
import { macFromIPv4 } from '../net/mac.js';
import { externalIds } from './external-ids.js';
import { Keys, OWNER } from './keys.js';
import type { OvnPools } from './pools.js';
import { holdInPortSet, isPortSet, onlyIPv4Subnet, switchOfWarmSet } from './port-sets.js';
import { addressEntry, placementColumns, portIps, reservationKey, warmHolder, words, type Placement } from './records.js';
import { tagsInFlight } from './vlan-tags.js';
import { macsOnSwitch } from './switch-macs.js';

/** Where a warm port of a network of Docker's IPAM may go. */
export interface PortSetHint {
  /** Not below this address: Docker gives none lower (an --ip-range). */
  floor?: string;
  /** Addresses endpoints are being created with right now (asked again each time the transaction is built). */
  avoid?: () => Iterable<string>;
  /** Told the address each time the transaction is built with one. */
  onChosen?: (ip: string) => void;
}

/**
 * Create one warm port of `chassis` for `pool` (a pool or a port set),
 * unless fewer than `reserveFree` addresses would stay free. Returns its
 * name, or undefined when there is no room.
 */
export async function createWarmPort(
  nb: OvsdbClient,
  pools: OvnPools,
  pool: string,
  owner: WarmOwner,
  reserveFree: number,
  hint: PortSetHint = {},
): Promise<string | undefined> {
  const name = randomBytes(32).toString('hex');
  const tags = tagsInFlight.chooser();
  const place = (tx: Transaction, replica: Replica): Placement =>
    owner.parent ? { parent: owner.parent, tag: tags.choose(tx, replica, owner.parent) } : { chassis: owner.chassis };
  const build = isPortSet(pool) ? onPortSet(pool, name, owner, place, reserveFree, hint) : onPool(pools, pool, name, owner, place, reserveFree);
  const { value } = await nb.transaction(
    (tx, replica) => {
      // A retry after a lost reply finds the port it made: the name is this call's own.
      if (replica.findOne('Logical_Switch_Port', 'name', name)) return true;
      return build(tx, replica);
    },
    isPortSet(pool)
      ? // Endpoints joining the switch meanwhile make this re-run: a burst of container starts may take several.
        { comment: `ovn-docker-driver: warm port for network ${pool}`, retries: 20 }
      : { comment: `ovn-docker-driver: warm port for ${pool}`, ...(owner.parent ? { retries: 20 } : {}) },
  ).finally(() => tags.release());
  return value ? name : undefined;
}

/** Where a new warm port is bound, chosen inside its transaction (a nested port's tag, see vlan-tags.ts). */
type PlaceFn = (tx: Transaction, replica: Replica) => Placement;

/** Who keeps a warm port: this host's id, and in nested mode the VM's port it is a child of. */
export interface WarmOwner {
  chassis: string;
  parent?: string;
}

/** On a pool of our IPAM: the lowest free address of the pool. */
function onPool(pools: OvnPools, pool: string, name: string, owner: WarmOwner, place: PlaceFn, reserveFree: number) {
  return (tx: Transaction, replica: Replica): boolean => {
    const set = replica.findOne('Address_Set', 'name', pool);
    const ls = replica.findByExternalId('Logical_Switch', Keys.poolV4, pool)[0];
    if (!set || !ls) return false;
    if (pools.countFree(pool, reserveFree + 1, replica) <= reserveFree) return false;
    const ip = pools.freeAddress(pool, replica);
    if (!ip) return false;
    if (macsOnSwitch(replica, ls).has(macFromIPv4(ip))) return false;
    const prefix = externalIds(set).get(Keys.pool)!.split('/')[1]!;
    // The whole reservation map: another host reserving anything meanwhile makes this re-run.
    tx.verify('Address_Set', set, ['external_ids']);
    tx.mutate('Address_Set', [['_uuid', '==', set._uuid]], [['external_ids', 'insert', new Map([[reservationKey(ip), warmHolder(name)]])]]);
    tx.verify('Logical_Switch', ls, ['name']);
    insertWarmPort(tx, ls, { name, ip, prefix, chassis: owner.chassis, placement: place(tx, replica), setName: pool });
    return true;
  };
}

/**
 * On the switch of a network of Docker's IPAM: the lowest address (not
 * below the hint's floor) that no port of the switch has and Docker keeps
 * for nothing else (gateway, --aux-address): the address Docker gives next.
 */
function onPortSet(setName: string, name: string, owner: WarmOwner, place: PlaceFn, reserveFree: number, hint: PortSetHint) {
  return (tx: Transaction, replica: Replica): boolean => {
    const ls = switchOfWarmSet(replica, setName);
    const subnet = ls && onlyIPv4Subnet(ls);
    if (!ls || !subnet) return false;
    const set = replica.findOne('Address_Set', 'name', setName);
    const taken = addressesOnSwitch(replica, ls, set);
    for (const ip of hint.avoid?.() ?? []) taken.add(ip);
    const free = freeAddresses(subnet, taken, reserveFree + 1, hint.floor ? { from: hint.floor } : {});
    if (!free.first || free.count <= reserveFree) return false;
    const ip = free.first;
    if (macsOnSwitch(replica, ls).has(macFromIPv4(ip))) return false;
    hint.onChosen?.(ip);
    // No one else writes this key: the address is on no port of the switch (the guard below).
    holdInPortSet(tx, setName, set, ls, reservationKey(ip), warmHolder(name));
    // The switch's ports: an endpoint Docker gave this address meanwhile makes this re-run and pick another.
    tx.verify('Logical_Switch', ls, ['ports']);
    insertWarmPort(tx, ls, { name, ip, prefix: subnet.split('/')[1]!, chassis: owner.chassis, placement: place(tx, replica), setName });
    return true;
  };
}

/**
 * The addresses `count` warm ports on a port set should hold: the lowest
 * Docker's IPAM would give next (not below `floor`), counting those in
 * `warmIps` (held by this host's warm ports now) as free.
 */
export function preferredAddresses(replica: Replica, setName: string, warmIps: Iterable<string>, count: number, floor?: string): Set<string> {
  const ls = switchOfWarmSet(replica, setName);
  const subnet = ls && onlyIPv4Subnet(ls);
  if (!ls || !subnet) return new Set();
  const taken = addressesOnSwitch(replica, ls, replica.findOne('Address_Set', 'name', setName));
  for (const ip of warmIps) taken.delete(ip);
  return new Set(lowestFree(subnet, taken, count, floor ? { from: floor } : {}));
}

function insertWarmPort(
  tx: Transaction,
  ls: Row,
  port: { name: string; ip: string; prefix: string; chassis: string; placement: Placement; setName: string },
): void {
  const address = addressEntry(macFromIPv4(port.ip), port.ip);
  const { chassis, placement } = port;
  const row = tx.insert('Logical_Switch_Port', {
    name: port.name,
    addresses: [address],
    port_security: [address],
    external_ids: new Map([
      [Keys.owner, OWNER],
      [Keys.warm, chassis],
      [Keys.chassis, chassis],
      [Keys.poolV4, port.setName],
      [Keys.ipv4, `${port.ip}/${port.prefix}`],
    ]),
    ...placementColumns(placement),
  });
  tx.mutate('Logical_Switch', [['_uuid', '==', ls._uuid]], [['ports', 'insert', [row]]]);
}

/**
 * IPv4 addresses a warm port of a network of Docker's IPAM must not take:
 * every port's on the switch, the gateways and --aux-addresses Docker keeps,
 * and those the port set holds.
 */
function addressesOnSwitch(replica: Replica, ls: Row, set: Row | undefined): Set<string> {
  const ids = externalIds(ls);
  const taken = new Set<string>([Keys.ipv4Gateways, Keys.ipv4Aux].flatMap((key) => words(ids.get(key))));
  for (const uuid of Array.isArray(ls.ports) ? ls.ports : []) {
    const port = replica.get('Logical_Switch_Port', String(uuid));
    for (const ip of port ? portIps(port) : []) taken.add(ip);
  }
  for (const key of set ? externalIds(set).keys() : []) {
    if (key.startsWith(Keys.poolIp)) taken.add(key.slice(Keys.poolIp.length));
  }
  return taken;
}
