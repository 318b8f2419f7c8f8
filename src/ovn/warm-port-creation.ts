/**
 * Where new warm ports go, and their creation in one NB transaction: on a
 * pool of our IPAM, the lowest free addresses (the ones requests get next);
 * on a port set, the lowest addresses Docker's IPAM gives next. Either way,
 * only while enough addresses stay free for endpoints.
 */
import { randomBytes } from 'node:crypto';
import type { OvsdbClient, Replica, Row, Transaction } from '../ovsdb/index.js';
import { lowestFree } from '../net/addressing.js';
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
  /** Told the addresses each time the transaction is built with some. */
  onChosen?: (ips: string[]) => void;
}

/**
 * Create up to `count` warm ports of `chassis` for `pool` (a pool or a port
 * set) in one NB transaction, so that a refill of many costs ovn-northd one
 * round: as many as fit while `reserveFree` addresses stay free. Returns
 * their names, none when there is no room.
 */
export async function createWarmPorts(
  nb: OvsdbClient,
  pools: OvnPools,
  pool: string,
  owner: WarmOwner,
  count: number,
  reserveFree: number,
  hint: PortSetHint = {},
): Promise<string[]> {
  if (count <= 0) return [];
  const names = Array.from({ length: count }, () => randomBytes(32).toString('hex'));
  const tags = names.map(() => tagsInFlight.chooser());
  const place = (i: number, tx: Transaction, replica: Replica): Placement =>
    owner.parent ? { parent: owner.parent, tag: tags[i]!.choose(tx, replica, owner.parent) } : { chassis: owner.chassis };
  const build = isPortSet(pool) ? onPortSet(pool, names, owner, place, reserveFree, hint) : onPool(pools, pool, names, owner, place, reserveFree);
  const { value } = await nb.transaction(
    (tx, replica) => {
      // A retry after a lost reply finds the ports it made: the names are this call's own.
      const made = names.filter((name) => replica.findOne('Logical_Switch_Port', 'name', name));
      if (made.length) return made.length;
      return build(tx, replica);
    },
    isPortSet(pool)
      ? // Endpoints joining the switch meanwhile make this re-run: a burst of container starts may take several.
        { comment: `ovn-docker-driver: ${count} warm port(s) for network ${pool}`, retries: 20 }
      : { comment: `ovn-docker-driver: ${count} warm port(s) for ${pool}`, ...(owner.parent ? { retries: 20 } : {}) },
  ).finally(() => tags.forEach((t) => t.release()));
  return names.slice(0, value);
}

/** Where the i-th new warm port is bound, chosen inside its transaction (a nested port's tag, see vlan-tags.ts). */
type PlaceFn = (i: number, tx: Transaction, replica: Replica) => Placement;

/** Who keeps a warm port: this host's id, and in nested mode the VM's port it is a child of. */
export interface WarmOwner {
  chassis: string;
  parent?: string;
}

/** The first `wanted` of `free` that leave `reserveFree` behind and whose MAC no port of the switch has. */
function pick(free: string[], wanted: number, reserveFree: number, replica: Replica, ls: Row): string[] {
  const macs = macsOnSwitch(replica, ls);
  return free.slice(0, Math.max(0, Math.min(wanted, free.length - reserveFree))).filter((ip) => !macs.has(macFromIPv4(ip)));
}

/** On a pool of our IPAM: the lowest free addresses of the pool. */
function onPool(pools: OvnPools, pool: string, names: string[], owner: WarmOwner, place: PlaceFn, reserveFree: number) {
  return (tx: Transaction, replica: Replica): number => {
    const set = replica.findOne('Address_Set', 'name', pool);
    const ls = replica.findByExternalId('Logical_Switch', Keys.poolV4, pool)[0];
    if (!set || !ls) return 0;
    const ips = pick(pools.lowestFree(pool, names.length + reserveFree, replica), names.length, reserveFree, replica, ls);
    if (ips.length === 0) return 0;
    const prefix = externalIds(set).get(Keys.pool)!.split('/')[1]!;
    // The whole reservation map: another host reserving anything meanwhile makes this re-run.
    tx.verify('Address_Set', set, ['external_ids']);
    tx.mutate('Address_Set', [['_uuid', '==', set._uuid]], [
      ['external_ids', 'insert', new Map(ips.map((ip, i) => [reservationKey(ip), warmHolder(names[i]!)]))],
    ]);
    tx.verify('Logical_Switch', ls, ['name']);
    ips.forEach((ip, i) => insertWarmPort(tx, ls, { name: names[i]!, ip, prefix, chassis: owner.chassis, placement: place(i, tx, replica), setName: pool }));
    return ips.length;
  };
}

/**
 * On the switch of a network of Docker's IPAM: the lowest addresses (not
 * below the hint's floor) that no port of the switch has and Docker keeps
 * for nothing else (gateway, --aux-address): the addresses Docker gives next.
 */
function onPortSet(setName: string, names: string[], owner: WarmOwner, place: PlaceFn, reserveFree: number, hint: PortSetHint) {
  return (tx: Transaction, replica: Replica): number => {
    const ls = switchOfWarmSet(replica, setName);
    const subnet = ls && onlyIPv4Subnet(ls);
    if (!ls || !subnet) return 0;
    const set = replica.findOne('Address_Set', 'name', setName);
    const taken = addressesOnSwitch(replica, ls, set);
    for (const ip of hint.avoid?.() ?? []) taken.add(ip);
    const free = lowestFree(subnet, taken, names.length + reserveFree, hint.floor ? { from: hint.floor } : {});
    const ips = pick(free, names.length, reserveFree, replica, ls);
    if (ips.length === 0) return 0;
    hint.onChosen?.(ips);
    // No one else writes these keys: the addresses are on no port of the switch (the guard below).
    holdInPortSet(tx, setName, set, ls, new Map(ips.map((ip, i) => [reservationKey(ip), warmHolder(names[i]!)])));
    // The switch's ports: an endpoint Docker gave one of these addresses meanwhile makes this re-run and pick others.
    tx.verify('Logical_Switch', ls, ['ports']);
    const prefix = subnet.split('/')[1]!;
    ips.forEach((ip, i) => insertWarmPort(tx, ls, { name: names[i]!, ip, prefix, chassis: owner.chassis, placement: place(i, tx, replica), setName }));
    return ips.length;
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
      [Keys.switch, String(ls.name)],
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
