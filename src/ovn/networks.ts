/**
 * Docker networks and endpoints as OVN Northbound rows: a network is a
 * Logical_Switch, an endpoint a Logical_Switch_Port. Every write is one
 * transaction built from the replica, idempotent (re-running it after a
 * retry or a lost reply converges on the same rows) and guarded against
 * concurrent writers.
 */
import { DomainError } from '../errors.js';
import { OvsdbClient, type Replica, type Row, type RowChange, type Transaction } from '../ovsdb/index.js';
import { stripPrefix } from '../net/addressing.js';
import { DNS_NAME, ownedDnsRow, publishedNames, removeDnsNames, writeDnsRecords } from './dns-rows.js';
import { gatewayPort } from './gateway-port.js';
import { externalIds } from './external-ids.js';
import { Keys, OWNER } from './keys.js';
import { isPortSet, portSetName } from './port-sets.js';
import { isUnicastMac, macFromIPv4, macFromId } from '../net/mac.js';
import {
  attachedNetworks,
  attachmentIds,
  attachmentKeys,
  endpointPortRow,
  adoptedHolder,
  networkExternalIds,
  onPool,
  parseWarmHolder,
  portAddressEntries,
  portIps,
  reservationKey,
  toEndpoint,
  toNetwork,
  warmHolder,
  words,
  type EndpointRecord,
  type EndpointSpec,
  type NetworkRecord,
  type NetworkSpec,
  type SubnetSpec,
} from './records.js';

export type { EndpointRecord, EndpointSpec, NetworkRecord, NetworkSpec, SubnetSpec } from './records.js';

/** The model's refusals are DomainErrors; this name stays until the driver maps DomainError itself. */
export { DomainError as NetworkError } from '../errors.js';

export class OvnNetworks {
  /** Docker network id -> switch uuid, rebuilt when the replica moved on. */
  private attachments = new Map<string, string>();
  private attachmentsSeqno = -1;
  private attachmentsReplica: Replica | undefined;
  /**
   * Endpoint id -> port, for endpoints on warm ports (recorded in their
   * pool, see warm-ports.ts). Built from the replica once, then kept up to
   * date from its change events: a pool may hold thousands of addresses.
   */
  private adopted: Map<string, { port: string; networkId: string }> | undefined;
  private adoptedReplica: Replica | undefined;

  constructor(private readonly nb: OvsdbClient) {
    nb.on('change', (changes) => this.applyPoolChanges(changes));
  }

  get replica(): Replica {
    return this.nb.replica;
  }

  findNetwork(networkId: string): NetworkRecord | undefined {
    const row = this.switchRow(this.replica, networkId);
    return row ? toNetwork(row, networkId) : undefined;
  }

  findEndpoint(endpointId: string): EndpointRecord | undefined {
    return this.endpointPort(this.replica, endpointId)?.record;
  }

  /** All endpoints this driver made, on any host. */
  listEndpoints(): EndpointRecord[] {
    const out: EndpointRecord[] = [];
    for (const row of this.replica.rows('Logical_Switch_Port')) {
      const ids = externalIds(row);
      if (ids.get(Keys.owner) === OWNER && ids.has(Keys.endpointId)) out.push(toEndpoint(row));
    }
    for (const endpointId of this.adoptedPorts(this.replica).keys()) {
      const found = this.endpointPort(this.replica, endpointId);
      if (found) out.push(found.record);
    }
    return out;
  }

  /**
   * Create the logical switch of a network unless it exists (same id). A
   * network on a pool of our IPAM attaches to the pool's switch when another
   * host made it already.
   */
  async ensureNetwork(spec: NetworkSpec): Promise<NetworkRecord> {
    const attachment = attachmentIds(spec);
    await this.nb.transaction(
      (tx, replica) => {
        if (this.switchRow(replica, spec.networkId)) return;
        const shared = this.poolSwitch(replica, spec);
        if (shared) {
          checkSameSubnets(toNetwork(shared, spec.networkId), spec);
          tx.verify('Logical_Switch', shared, ['name']);
          tx.mutate('Logical_Switch', [['_uuid', '==', shared._uuid]], [
            ['external_ids', 'insert', attachment],
          ]);
          return;
        }
        // A pool's switch is named after the pool, so two hosts creating it at once collide on the guard.
        const name = spec.pools?.v4 ?? spec.pools?.v6 ?? spec.networkId;
        tx.guardAbsent('Logical_Switch', 'name', name);
        const ids = new Map([...networkExternalIds(spec), ...attachment]);
        const gateway = gatewayPort(name, spec);
        if (gateway) tx.guardAbsent('Logical_Switch_Port', 'name', gateway.name);
        tx.insert('Logical_Switch', {
          name,
          external_ids: ids,
          other_config: new Map([['mcast_snoop', 'false']]),
          ports: gateway ? [tx.insert('Logical_Switch_Port', gateway.row)] : [],
        });
      },
      { comment: `ovn-docker-driver: CreateNetwork ${spec.networkId}` },
    );
    const created = this.findNetwork(spec.networkId);
    if (!created) throw new Error(`logical switch for network ${spec.networkId} vanished right after creation`);
    return created;
  }

  /**
   * Detach a network from its switch; the last network out deletes the
   * switch (and every port left on it). Returns false when there was none.
   */
  async deleteNetwork(networkId: string): Promise<boolean> {
    const { value } = await this.nb.transaction(
      (tx, replica) => {
        const row = this.switchRow(replica, networkId);
        if (!row) return false;
        const others = attachedNetworks(row).filter((id) => id !== networkId);
        if (others.length > 0) {
          tx.mutate('Logical_Switch', [['_uuid', '==', row._uuid]], [
            ['external_ids', 'delete', attachmentKeys(networkId)],
          ]);
        } else {
          // Guard: a host attaching right now must not lose its switch.
          tx.verify('Logical_Switch', row, ['external_ids']);
          tx.delete('Logical_Switch', [['_uuid', '==', row._uuid]]);
          // DNS rows and Address_Sets are root rows: they would outlive the switch.
          const dns = ownedDnsRow(replica, row);
          if (dns) tx.delete('DNS', [['_uuid', '==', dns._uuid]]);
          if (replica.findOne('Address_Set', 'name', portSetName(String(row.name)))) {
            tx.delete('Address_Set', [['name', '==', portSetName(String(row.name))]]);
          }
        }
        return true;
      },
      { comment: `ovn-docker-driver: DeleteNetwork ${networkId}` },
    );
    return value;
  }

  /**
   * Create the logical switch port of an endpoint, with addresses and
   * port_security written in the same transaction, unless it exists.
   */
  async ensureEndpoint(spec: EndpointSpec): Promise<{ endpoint: EndpointRecord; replaced: string[] }> {
    let replaced: string[] = [];
    const { value } = await this.nb.transaction(
      (tx, replica) => {
        const found = this.endpointPort(replica, spec.endpointId);
        const existing = found?.row ?? replica.findOne('Logical_Switch_Port', 'name', spec.endpointId);
        if (existing) {
          const record = found?.record ?? toEndpoint(existing);
          if (record.networkId !== spec.networkId) {
            throw new DomainError(
              `endpoint ${spec.endpointId} already exists on network ${record.networkId}, not ${spec.networkId}`,
              'conflict',
              { endpointId: spec.endpointId, networkId: record.networkId },
            );
          }
          return record;
        }
        const ls = this.switchRow(replica, spec.networkId);
        if (!ls) throw new DomainError(`network ${spec.networkId} does not exist in OVN`, 'not-found', { networkId: spec.networkId });
        // Docker's MAC (--mac-address) is checked against these ports: one inserted meanwhile makes this re-run.
        // (Before the takeover below, whose mutation of `ports` a later wait would see.)
        if (spec.mac) tx.verify('Logical_Switch', ls, ['ports']);
        const ipv4 = spec.ipv4 && stripPrefix(spec.ipv4);
        const takenOver = ipv4 ? this.takeOverWarmPorts(tx, replica, ls, ipv4) : new Set<string>();
        replaced = this.replaceStalePorts(tx, replica, ls, spec, takenOver);
        if (ipv4 && !onPool(ls)) guardNoWarmClaim(tx, replica, ls, ipv4, spec.endpointId);
        const holders = macHolders(replica, ls, takenOver);
        const mac = spec.mac ? checkMacFree(spec.mac, spec.networkId, holders) : chooseMac(spec, holders);
        this.insertPort(tx, ls, spec, mac);
        return undefined;
      },
      { comment: `ovn-docker-driver: CreateEndpoint ${spec.endpointId}` },
    );
    if (value) return { endpoint: value, replaced: [] };
    const created = this.findEndpoint(spec.endpointId);
    if (!created) throw new Error(`logical switch port for endpoint ${spec.endpointId} vanished right after creation`);
    return { endpoint: created, replaced };
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
  private replaceStalePorts(tx: Transaction, replica: Replica, ls: Row, spec: EndpointSpec, skip: ReadonlySet<string>): string[] {
    const wanted = [spec.ipv4, spec.ipv6].flatMap((a) => (a ? [stripPrefix(a).toLowerCase()] : []));
    const pooled = onPool(ls);
    const replaced: string[] = [];
    for (const uuid of Array.isArray(ls.ports) ? ls.ports : []) {
      const port = skip.has(String(uuid)) ? undefined : replica.get('Logical_Switch_Port', String(uuid));
      const held = port ? portIps(port).filter((ip) => wanted.includes(ip)) : [];
      if (!port || held.length === 0) continue;
      const ids = externalIds(port);
      const holder = this.holderOf(replica, port);
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
  private holderOf(
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
    const key = reservationKey(stripPrefix(ipv4));
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
   * Docker's IPAM gave an endpoint the address of a warm port that is still
   * warm (of another host, or one whose MAC did not suit the endpoint): the
   * port goes, in the endpoint's own transaction, so that no two ports hold
   * one address. Its host sees it go and removes the veth (warm-pool.ts).
   * Returns the uuids of the ports taken over (their MACs are free again).
   */
  private takeOverWarmPorts(tx: Transaction, replica: Replica, ls: Row, ip: string): Set<string> {
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

  /** Remove an endpoint's port from its switch. Returns false when there was none. */
  async deleteEndpoint(endpointId: string): Promise<boolean> {
    const { value } = await this.nb.transaction(
      (tx, replica) => {
        const found = this.endpointPort(replica, endpointId);
        const port = found?.row;
        if (!port) return false;
        // A warm port of Docker's IPAM: its port set holds the address for the endpoint, and nothing else releases it.
        const setName = externalIds(port).get(Keys.poolV4);
        if (setName && isPortSet(setName) && found.record.ipv4) {
          const holder = adoptedHolder(String(port.name), endpointId, found.record.networkId);
          tx.mutate(
            'Address_Set',
            [['name', '==', setName], ['external_ids', 'includes', new Map([[reservationKey(found.record.ipv4), holder]])]],
            [['external_ids', 'delete', [reservationKey(found.record.ipv4)]]],
          );
        }
        // A port is non-root: removing the reference deletes it; a direct delete would break referential integrity.
        for (const ls of replica.rows('Logical_Switch')) {
          if (Array.isArray(ls.ports) && ls.ports.includes(port._uuid)) {
            tx.mutate('Logical_Switch', [['_uuid', '==', ls._uuid]], [['ports', 'delete', [port._uuid]]]);
            removeDnsNames(tx, replica, ls, port);
          }
        }
        return true;
      },
      // Names it published are rebuilt from the DNS row as read: other hosts publishing meanwhile make this re-run.
      { comment: `ovn-docker-driver: DeleteEndpoint ${endpointId}`, retries: 20 },
    );
    return value;
  }

  /** Resolve once OVN reports the port up (bound and its flows installed). */
  async waitPortUp(portName: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    await this.replica.waitFor(
      () => {
        const port = this.replica.findOne('Logical_Switch_Port', 'name', portName);
        if (!port) throw new DomainError(`logical switch port ${portName} was deleted while waiting for it to come up`, 'not-found', { port: portName });
        return port.up === true ? true : undefined;
      },
      { timeoutMs, what: `logical switch port ${portName} to come up`, ...(signal ? { signal } : {}) },
    );
  }

  private insertPort(tx: Transaction, ls: Row, spec: EndpointSpec, mac: string): void {
    // Guards: the name must still be free, and the switch must still exist, or the port would be garbage-collected.
    tx.guardAbsent('Logical_Switch_Port', 'name', spec.endpointId);
    tx.verify('Logical_Switch', ls, ['name']);
    const port = tx.insert('Logical_Switch_Port', endpointPortRow(spec, mac));
    tx.mutate('Logical_Switch', [['_uuid', '==', ls._uuid]], [['ports', 'insert', [port]]]);
  }

  /**
   * Publish DNS names of endpoints in their switches' DNS rows (OVN answers
   * them for every port of the switch, on every host), all in one
   * transaction: on OVN < 23.09 each change to a DNS row costs ovn-northd a
   * full recompute, so callers batch. Returns the endpoints found.
   */
  async publishNames(entries: { endpointId: string; names: string[] }[]): Promise<string[]> {
    const { value } = await this.nb.transaction(
      (tx, replica) => {
        const published: string[] = [];
        // Per switch: the names whose records change, and the names each publishing port will have.
        const perSwitch = new Map<string, { ls: Row; names: Set<string>; ports: Map<string, string[]> }>();
        for (const { endpointId, names } of entries) {
          const found = this.endpointPort(replica, endpointId);
          const ls = found && this.switchRow(replica, found.record.networkId);
          if (!found || !ls) continue;
          published.push(endpointId);
          const clean = [...new Set(names.map((n) => n.toLowerCase()).filter((n) => DNS_NAME.test(n)))];
          if ((!found.record.ipv4 && !found.record.ipv6) || clean.length === 0) continue;
          const batch = perSwitch.get(ls._uuid) ?? { ls, names: new Set<string>(), ports: new Map<string, string[]>() };
          // Names the port published before and no longer does are rebuilt too, without its address.
          for (const name of [...publishedNames(found.row), ...clean]) batch.names.add(name);
          batch.ports.set(found.row._uuid, clean);
          perSwitch.set(ls._uuid, batch);
          // A container may end meanwhile, its port kept warm for the next one: its names must not land there.
          guardStillEndpoints(tx, found.row, endpointId, found.record.networkId);
          tx.mutate('Logical_Switch_Port', [['_uuid', '==', found.row._uuid]], [
            ['external_ids', 'delete', [Keys.dnsNames]],
            ['external_ids', 'insert', new Map([[Keys.dnsNames, clean.join(' ')]])],
          ]);
        }
        for (const { ls, names, ports } of perSwitch.values()) writeDnsRecords(tx, replica, ls, names, ports);
        return published;
      },
      // Hosts publishing on one switch at once (a restart of several) make each other re-run.
      { comment: `ovn-docker-driver: publish DNS names of ${entries.length} endpoint(s)`, retries: 20 },
    );
    return value;
  }

  /** Docker networks of this host (by chassis) that are attached to our switches. */
  localNetworkIds(chassis: string): string[] {
    const out: string[] = [];
    for (const row of this.replica.rows('Logical_Switch')) {
      for (const [key, value] of externalIds(row)) {
        if (key.startsWith(Keys.networkPrefix) && value === chassis) out.push(key.slice(Keys.networkPrefix.length));
      }
    }
    return out;
  }

  private switchRow(replica: Replica, networkId: string): Row | undefined {
    if (replica !== this.attachmentsReplica || replica.seqno !== this.attachmentsSeqno) {
      // Networks are few and change rarely: a full scan after each update is cheap and never stale.
      this.attachments = new Map();
      for (const row of replica.rows('Logical_Switch')) {
        if (externalIds(row).get(Keys.owner) !== OWNER) continue;
        for (const id of attachedNetworks(row)) this.attachments.set(id, row._uuid);
      }
      this.attachmentsReplica = replica;
      this.attachmentsSeqno = replica.seqno;
    }
    const uuid = this.attachments.get(networkId);
    return uuid ? replica.get('Logical_Switch', uuid) : undefined;
  }

  private poolSwitch(replica: Replica, spec: NetworkSpec): Row | undefined {
    if (spec.pools?.v4) {
      const row = replica.findByExternalId('Logical_Switch', Keys.poolV4, spec.pools.v4)[0];
      if (row) return row;
    }
    if (spec.pools?.v6) return replica.findByExternalId('Logical_Switch', Keys.poolV6, spec.pools.v6)[0];
    return undefined;
  }

  /** An endpoint's port: one made for it (endpoint id on the port), or a warm port it adopted (recorded in the pool). */
  private endpointPort(replica: Replica, endpointId: string): { row: Row; record: EndpointRecord } | undefined {
    const own = replica.findByExternalId('Logical_Switch_Port', Keys.endpointId, endpointId)[0];
    if (own) return { row: own, record: toEndpoint(own) };
    const adopted = this.adoptedPorts(replica).get(endpointId);
    const row = adopted && replica.findOne('Logical_Switch_Port', 'name', adopted.port);
    return row ? { row, record: { ...toEndpoint(row), networkId: adopted.networkId, endpointId } } : undefined;
  }

  private adoptedPorts(replica: Replica): Map<string, { port: string; networkId: string }> {
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
 * Fail (and so re-run) the transaction unless the port still belongs to the
 * endpoint at commit: by the endpoint id on it, or for a warm port it
 * adopted, by its holder in the pool or port set.
 */
function guardStillEndpoints(tx: Transaction, port: Row, endpointId: string, networkId: string): void {
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

/** The ports on a switch with each of their MACs (lower case). */
function* portMacs(replica: Replica, ls: Row): Generator<[mac: string, port: Row]> {
  for (const uuid of Array.isArray(ls.ports) ? ls.ports : []) {
    const port = replica.get('Logical_Switch_Port', String(uuid));
    for (const { mac } of port ? portAddressEntries(port) : []) yield [mac.toLowerCase(), port!];
  }
}

/**
 * Fail the transaction (so that it re-runs on a fresher replica) if a warm
 * port of any host claims `ip` in the switch's port set at commit: one made
 * after our replica was read. A probe key is inserted (a no-op if the
 * address is claimed), checked and deleted again: the set ends unchanged,
 * so ovn-northd sees nothing.
 */
function guardNoWarmClaim(tx: Transaction, replica: Replica, ls: Row, ip: string, endpointId: string): void {
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

/** The MACs (lower case) of every port on a switch. */
export function macsOnSwitch(replica: Replica, ls: Row): Set<string> {
  return new Set([...portMacs(replica, ls)].map(([mac]) => mac));
}

/**
 * Who holds each MAC (lower case) on a switch, for an error message: its
 * ports but those in `except` (this transaction removes them), and the
 * gateway, whose MAC is reserved from the network's gateway addresses even
 * when its localport is missing.
 */
function macHolders(replica: Replica, ls: Row, except: ReadonlySet<string>): Map<string, string> {
  const holders = new Map<string, string>();
  for (const gateway of words(externalIds(ls).get(Keys.ipv4Gateways))) {
    holders.set(macFromIPv4(gateway), "the gateway's");
  }
  for (const [mac, port] of portMacs(replica, ls)) {
    if (except.has(port._uuid) || holders.has(mac)) continue;
    holders.set(mac, externalIds(port).get(Keys.role) === 'gateway' ? "the gateway's" : `already used by port ${String(port.name)}`);
  }
  return holders;
}

/** Docker's MAC for the endpoint, unless another port of the switch (or its gateway) holds it. */
function checkMacFree(mac: string, networkId: string, holders: ReadonlyMap<string, string>): string {
  const holder = holders.get(mac.toLowerCase());
  if (holder) throw new DomainError(`MAC address ${mac} is ${holder} on network ${networkId}; choose another --mac-address`, 'conflict', { networkId, mac });
  return mac;
}

/** Derive a MAC nobody on the switch holds. */
function chooseMac(spec: EndpointSpec, holders: ReadonlyMap<string, string>): string {
  if (spec.ipv4) {
    const mac = macFromIPv4(stripPrefix(spec.ipv4));
    if (!holders.has(mac)) return mac;
  }
  for (let attempt = 0; attempt < 64; attempt++) {
    const mac = macFromId(spec.endpointId, attempt);
    if (!holders.has(mac) && isUnicastMac(mac)) return mac;
  }
  throw new DomainError(`could not find a free MAC address for endpoint ${spec.endpointId}`, 'conflict', { endpointId: spec.endpointId });
}

/** A host attaching to a pool's switch must mean the same network: same subnets. */
function checkSameSubnets(existing: NetworkRecord, spec: NetworkSpec): void {
  const same = (a: SubnetSpec[], b: SubnetSpec[]) =>
    a.map((x) => x.subnet).sort().join(' ') === b.map((x) => x.subnet).sort().join(' ');
  if (!same(existing.ipv4, spec.ipv4) || !same(existing.ipv6, spec.ipv6)) {
    const show = (n: { ipv4: SubnetSpec[]; ipv6: SubnetSpec[] }) => [...n.ipv4, ...n.ipv6].map((x) => x.subnet).join(', ');
    throw new DomainError(
      `the pool's logical switch ${existing.name} carries subnets ${show(existing)}, not ${show(spec)}; ` +
        'create the network with the same --subnet options on every host',
      'conflict',
      { networkId: spec.networkId, switch: existing.name },
    );
  }
}
