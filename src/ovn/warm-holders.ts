/**
 * Warm ports (warm-ports.ts) as an endpoint's transactions meet them: which
 * endpoint adopted which port (recorded in the pool or port set only, see
 * adoptedHolder), whose port holds an address, and the steps CreateEndpoint,
 * DeleteEndpoint and publishNames take in their own transaction so that no
 * two ports ever hold one address on a switch.
 */
import { DomainError } from '../errors.js';
import type { OvsdbClient, Replica, Row, RowChange, Transaction } from '../ovsdb/index.js';
import { stripPrefix } from '../net/addressing.js';
import { removeDnsNames } from './dns-rows.js';
import { externalIds } from './external-ids.js';
import { Keys, OWNER } from './keys.js';
import { isPortSet, portSetName } from './port-sets.js';
import { adoptedHolder, onPool, parseWarmHolder, portIps, reservationKey, warmHolder, type EndpointRecord, type EndpointSpec } from './records.js';

/**
 * Endpoint id -> port, for endpoints on warm ports. Built from the replica
 * once, then kept up to date from its change events: a pool may hold
 * thousands of addresses.
 */
export class AdoptedPorts {
  private adopted: Map<string, { port: string; networkId: string }> | undefined;
  private adoptedReplica: Replica | undefined;

  constructor(nb: OvsdbClient) {
    nb.on('change', (changes) => this.applyPoolChanges(changes));
  }

  /** The warm port an endpoint adopted, and the network it adopted it for. */
  of(replica: Replica, endpointId: string): { port: string; networkId: string } | undefined {
    return this.index(replica).get(endpointId);
  }

  endpointIds(replica: Replica): string[] {
    return [...this.index(replica).keys()];
  }

  private index(replica: Replica): Map<string, { port: string; networkId: string }> {
    if (!this.adopted || replica !== this.adoptedReplica) {
      this.adopted = new Map();
      for (const set of replica.rows('Address_Set')) this.indexPool(set, 'add');
      this.adoptedReplica = replica;
    }
    return this.adopted;
  }

  private applyPoolChanges(changes: RowChange[]): void {
    if (!this.adopted) return;
    for (const change of changes) {
      if (change.table !== 'Address_Set') continue;
      if (change.old) this.indexPool(change.old, 'remove');
      if (change.new) this.indexPool(change.new, 'add');
    }
  }

  private indexPool(set: Row, what: 'add' | 'remove'): void {
    const ids = externalIds(set);
    if (ids.get(Keys.owner) !== OWNER) return;
    for (const [key, holder] of ids) {
      const parsed = key.startsWith(Keys.poolIp) ? parseWarmHolder(holder) : undefined;
      if (parsed?.state !== 'adopted') continue;
      if (what === 'add') this.adopted!.set(parsed.endpointId, { port: parsed.port, networkId: parsed.networkId });
      else if (this.adopted!.get(parsed.endpointId)?.port === parsed.port) this.adopted!.delete(parsed.endpointId);
    }
  }
}

/**
 * Docker's IPAM gave an endpoint the address of a warm port that is still
 * warm (of another host, or one whose MAC did not suit the endpoint): the
 * port goes, in the endpoint's own transaction, so that no two ports hold
 * one address. Its host sees it go and removes the veth (src/warm).
 * Returns the uuids of the ports taken over (their MACs are free again).
 */
export function takeOverWarmPorts(tx: Transaction, replica: Replica, ls: Row, ip: string): Set<string> {
  const taken = new Set<string>();
  for (const uuid of Array.isArray(ls.ports) ? ls.ports : []) {
    const port = replica.get('Logical_Switch_Port', String(uuid));
    const ids = port && externalIds(port);
    if (!port || !ids?.has(Keys.warm) || stripPrefix(ids.get(Keys.ipv4) ?? '') !== ip) continue;
    const set = replica.findOne('Address_Set', 'name', ids.get(Keys.poolV4) ?? '');
    const key = reservationKey(ip);
    const holder = warmHolder(String(port.name));
    // Claimed or adopted: an endpoint's port, not a warm one to take.
    if (!set || externalIds(set).get(key) !== holder) continue;
    tx.guardMatches('Address_Set', 'name', String(set.name), [['external_ids', 'includes', new Map([[key, holder]])]]);
    tx.mutate('Address_Set', [['_uuid', '==', set._uuid]], [['external_ids', 'delete', [key]]]);
    tx.mutate('Logical_Switch', [['_uuid', '==', ls._uuid]], [['ports', 'delete', [port._uuid]]]);
    taken.add(port._uuid);
  }
  return taken;
}

/**
 * Ports (not warm ones, see takeOverWarmPorts) that hold an address Docker
 * gave this endpoint. Docker hands an address out again only once its
 * holder is gone from its view, so a port of this host's same network at it
 * is a leftover (a crash between CreateEndpoint and the engine's rollback):
 * it goes in this transaction. So does any port at it on a pool of our
 * IPAM, whose reservation this endpoint now holds. Anything else is
 * refused: two ports must never hold one address on a switch. Returns the
 * names of the ports removed (their host removes the veths).
 */
export function replaceStalePorts(tx: Transaction, replica: Replica, ls: Row, spec: EndpointSpec, skip: ReadonlySet<string>): string[] {
  const wanted = [spec.ipv4, spec.ipv6].flatMap((a) => (a ? [stripPrefix(a).toLowerCase()] : []));
  const pooled = onPool(ls);
  const replaced: string[] = [];
  for (const uuid of Array.isArray(ls.ports) ? ls.ports : []) {
    const port = skip.has(String(uuid)) ? undefined : replica.get('Logical_Switch_Port', String(uuid));
    const held = port ? portIps(port).filter((ip) => wanted.includes(ip)) : [];
    if (!port || held.length === 0) continue;
    const ids = externalIds(port);
    const holder = holderOf(replica, port);
    const ours = ids.get(Keys.owner) === OWNER || ids.has(Keys.warm);
    const leftover = holder.chassis !== undefined && holder.chassis === spec.chassis && (holder.anyNetwork || holder.networkId === spec.networkId);
    if (!ours || ids.get(Keys.role) === 'gateway' || !(pooled || leftover)) {
      const who = holder.endpointId ? `endpoint ${holder.endpointId}` : `port ${String(port.name)}`;
      throw new DomainError(
        `address ${held[0]} is already in use on network ${spec.networkId} by ${who}${holder.chassis ? ` of host ${holder.chassis}` : ''}`,
        'conflict',
        { networkId: spec.networkId, address: held[0]!, port: String(port.name) },
      );
    }
    if (holder.set && holder.key && holder.value) {
      tx.mutate('Address_Set', [['name', '==', holder.set], ['external_ids', 'includes', new Map([[holder.key, holder.value]])]], [
        ['external_ids', 'delete', [holder.key]],
      ]);
    }
    tx.mutate('Logical_Switch', [['_uuid', '==', ls._uuid]], [['ports', 'delete', [port._uuid]]]);
    removeDnsNames(tx, replica, ls, port);
    replaced.push(String(port.name));
  }
  return replaced;
}

/** Whose a port is: an endpoint's (made for it, or a warm port it adopted), or a warm port's host; and its holder in a pool or port set. */
function holderOf(
  replica: Replica,
  port: Row,
): { endpointId?: string; networkId?: string; anyNetwork?: boolean; chassis?: string; set?: string; key?: string; value?: string } {
  const ids = externalIds(port);
  if (ids.has(Keys.endpointId)) {
    const chassis = ids.get(Keys.chassis);
    return { endpointId: ids.get(Keys.endpointId)!, networkId: ids.get(Keys.networkId) ?? '', ...(chassis ? { chassis } : {}) };
  }
  const chassis = ids.get(Keys.warm);
  const set = ids.get(Keys.poolV4);
  const ipv4 = ids.get(Keys.ipv4);
  if (!chassis || !set || !ipv4) return {};
  const key = reservationKey(ipv4);
  const value = externalIds(replica.findOne('Address_Set', 'name', set) ?? { _uuid: '' }).get(key);
  const parsed = parseWarmHolder(value);
  return {
    chassis,
    set,
    key,
    ...(value ? { value } : {}),
    // A warm port no endpoint adopted belongs to its switch: to every network on it.
    ...(parsed?.state === 'adopted' ? { endpointId: parsed.endpointId, networkId: parsed.networkId } : { anyNetwork: true }),
  };
}

/**
 * Fail the transaction (so that it re-runs on a fresher replica) if a warm
 * port of any host claims `ip` in the switch's port set at commit: one made
 * after our replica was read. A probe key is inserted (a no-op if the
 * address is claimed), checked and deleted again: the set ends unchanged,
 * so ovn-northd sees nothing.
 */
export function guardNoWarmClaim(tx: Transaction, replica: Replica, ls: Row, ip: string, endpointId: string): void {
  const name = portSetName(String(ls.name));
  if (!replica.findOne('Address_Set', 'name', name)) {
    tx.guardAbsent('Address_Set', 'name', name);
    return;
  }
  const key = reservationKey(ip);
  const probe = new Map([[key, `probe ${endpointId}`]]);
  tx.mutate('Address_Set', [['name', '==', name]], [['external_ids', 'insert', probe]]);
  tx.guardMatches('Address_Set', 'name', name, [['external_ids', 'includes', probe]]);
  tx.mutate('Address_Set', [['name', '==', name]], [['external_ids', 'delete', [key]]]);
}

/**
 * Fail (and so re-run) the transaction unless the port still belongs to the
 * endpoint at commit: by the endpoint id on it, or for a warm port it
 * adopted, by its holder in the pool or port set.
 */
export function guardStillEndpoints(tx: Transaction, port: Row, endpointId: string, networkId: string): void {
  const ids = externalIds(port);
  const ipv4 = ids.get(Keys.ipv4);
  const set = ids.get(Keys.poolV4);
  if (ids.get(Keys.endpointId) === endpointId || !ipv4 || !set) {
    tx.guardMatches('Logical_Switch_Port', 'name', String(port.name), [['external_ids', 'includes', new Map([[Keys.endpointId, endpointId]])]]);
  } else {
    const holder = adoptedHolder(String(port.name), endpointId, networkId);
    tx.guardMatches('Address_Set', 'name', set, [['external_ids', 'includes', new Map([[reservationKey(ipv4), holder]])]]);
  }
}

/**
 * In the transaction deleting an endpoint's port: a warm port of Docker's
 * IPAM it adopted has its address held for it in the port set, and nothing
 * else releases it.
 */
export function releaseAdoptedInPortSet(tx: Transaction, port: Row, endpoint: EndpointRecord): void {
  const setName = externalIds(port).get(Keys.poolV4);
  if (!setName || !isPortSet(setName) || !endpoint.ipv4) return;
  const key = reservationKey(endpoint.ipv4);
  const holder = adoptedHolder(String(port.name), endpoint.endpointId, endpoint.networkId);
  tx.mutate('Address_Set', [['name', '==', setName], ['external_ids', 'includes', new Map([[key, holder]])]], [['external_ids', 'delete', [key]]]);
}
