/**
 * Warm ports: logical switch ports a host creates ahead of time, at the
 * address its next container will get, so that a container start finds its
 * port already bound and its flows installed.
 *
 * Why: ovn-northd (before 23.09) recomputes every logical flow on each NB
 * change, so a new port's binding appears hundreds of milliseconds after
 * the write on a large NB. When the address is known before Docker asks
 * (our IPAM chooses it; Docker's gives the lowest free one), the port (and
 * its veth, see driver/warm-pool.ts) can exist before the container does,
 * complete with addresses and port_security.
 *
 * A warm port is an LSP with external_ids docker:warm=<chassis>, which it
 * keeps all its life; its state is the holder of its address in the pool
 * (pools.ts) or port set (port-sets.ts), so that no step of a container's
 * life writes to the LSP (on OVN < 23.09 an LSP write costs ovn-northd a
 * full recompute; an Address_Set write does not):
 *   warm      "warm <port>": ready for the next container
 *   claimed   Docker's holder: RequestAddress gave the address out
 *   adopted   "ep <port> <endpoint> <network>": CreateEndpoint made it the
 *             endpoint's port
 *   recycled  "recycled <port>": DeleteEndpoint kept it for the next
 *             container; ReleaseAddress makes it warm again
 * Any request may take over a warm port's address when the pool has nothing
 * else left or asks for that very address (pools.ts).
 *
 * Networks of Docker's IPAM have warm ports too. Docker's IPAM gives each
 * endpoint the lowest free address of the subnet, so a warm port holds one
 * of the lowest addresses no port of the switch has (above the lowest one
 * Docker was seen to give, which finds an --ip-range), in the switch's port
 * set (port-sets.ts). There is no claimed state: CreateEndpoint with a warm
 * port's address adopts it, and DeleteEndpoint makes it warm again; Docker's
 * next container gets the same lowest free address. An endpoint that gets a
 * warm port's address but cannot use the port (another MAC, another host)
 * takes the address over (networks.ts).
 */
import { randomBytes } from 'node:crypto';
import type { OvsdbClient, Replica, Row, RowChange, Transaction } from '../ovsdb/index.js';
import { freeAddresses, lowestFree, stripPrefix } from '../net/addressing.js';
import { externalIds } from './external-ids.js';
import { removeDnsNames } from './dns-rows.js';
import { Keys, OWNER } from './keys.js';
import { macFromIPv4 } from '../net/mac.js';
import { DomainError } from '../errors.js';
import { macsOnSwitch } from './switch-macs.js';
import {
  addressEntry,
  adoptedHolder,
  DEFAULT_MTU,
  parseWarmHolder,
  portIps,
  portMac,
  recycledHolder,
  reservationKey,
  switchMtu,
  toEndpoint,
  warmHolder,
  warmPortOf,
  words,
  type EndpointRecord,
} from './records.js';
import { type OvnPools, swapHolder } from './pools.js';
import { isPortSet, portSetName, switchOfWarmSet } from './port-sets.js';

export type WarmState = 'warm' | 'claimed' | 'adopted' | 'recycled';

/** Where a warm port of a network of Docker's IPAM may go (see createOnPortSet). */
export interface PortSetHint {
  /** Not below this address: Docker gives none lower (an --ip-range). */
  floor?: string;
  /** Addresses endpoints are being created with right now (asked again each time the transaction is built). */
  avoid?: () => Iterable<string>;
  /** Told the address each time the transaction is built with one. */
  onChosen?: (ip: string) => void;
}

export interface WarmPort {
  uuid: string;
  /** The LSP name, also external_ids:iface-id on OVS: random 64 hex digits, like an endpoint id. */
  name: string;
  /** The Address_Set holding its address: the pool whose switch the port is on, or the switch's port set (port-sets.ts). */
  pool: string;
  /** "10.1.0.250/24" */
  ipv4: string;
  mac: string;
  /** The switch's MTU, for the veth. */
  mtu: number;
  state: WarmState;
  /** The endpoint that adopted it. */
  endpointId?: string;
}

export class OvnWarmPorts {
  constructor(
    private readonly nb: OvsdbClient,
    private readonly pools: OvnPools,
  ) {}

  private get replica(): Replica {
    return this.nb.replica;
  }

  /**
   * Call `listener` with the name of every warm port of `chassis` that
   * disappears from NB while still warm (another host's request took its
   * address over, or its switch was deleted). Returns the unsubscriber.
   */
  onRemoved(chassis: string, listener: (portName: string) => void): () => void {
    const handler = (changes: RowChange[]) => {
      for (const c of changes) {
        if (c.table === 'Logical_Switch_Port' && c.old && !c.new && externalIds(c.old).get(Keys.warm) === chassis) {
          listener(String(c.old.name));
        }
      }
    };
    this.nb.on('change', handler);
    return () => this.nb.off('change', handler);
  }

  /** Ports kept by `chassis`, in any state. */
  list(chassis: string, pool?: string): WarmPort[] {
    const out: WarmPort[] = [];
    for (const row of this.replica.findByExternalId('Logical_Switch_Port', Keys.warm, chassis)) {
      const port = this.toWarmPort(this.replica, row);
      if (port && (pool === undefined || port.pool === pool)) out.push(port);
    }
    return out;
  }

  /** The port by name, if it is one of the warm ports (in any state). */
  find(name: string): WarmPort | undefined {
    const row = this.replica.findOne('Logical_Switch_Port', 'name', name);
    return row && externalIds(row).has(Keys.warm) ? this.toWarmPort(this.replica, row) : undefined;
  }

  /** This chassis's port on the pool's switch with this address, if it is in one of `states`. */
  findByAddress(chassis: string, pool: string, ipv4: string, states: WarmState[]): WarmPort | undefined {
    const ip = stripPrefix(ipv4);
    return this.list(chassis, pool).find((p) => states.includes(p.state) && stripPrefix(p.ipv4) === ip);
  }

  /**
   * Switches a warm port may go on for `chassis`, by the Address_Set that
   * records their warm ports: IPv4-only switches with a network of this host
   * attached, our IPAM's by pool and Docker's IPAM's (one subnet) by port
   * set. (Dual-stack endpoints get two addresses; one port cannot be ready
   * for both.)
   */
  eligiblePools(chassis: string): string[] {
    const out: string[] = [];
    for (const row of this.replica.rows('Logical_Switch')) {
      const set = warmSetOfSwitch(row, chassis);
      if (set) out.push(set);
    }
    return out;
  }

  /** Whether `setName` is one of eligiblePools(chassis): a look-up of its one switch, for per-endpoint calls. */
  isEligible(setName: string, chassis: string): boolean {
    const ls = switchOfWarmSet(this.replica, setName);
    return ls !== undefined && warmSetOfSwitch(ls, chassis) === setName;
  }

  /**
   * Create one warm port on the pool's switch, holding the lowest free
   * address (the one a request would get next), unless fewer than
   * `reserveFree` addresses would stay free for endpoints. Returns undefined
   * when there is no room.
   */
  async create(pool: string, chassis: string, reserveFree: number, hint: PortSetHint = {}): Promise<WarmPort | undefined> {
    if (isPortSet(pool)) return this.createOnPortSet(pool, chassis, reserveFree, hint);
    const name = randomBytes(32).toString('hex');
    const { value } = await this.nb.transaction(
      (tx, replica) => {
        // A retry after a lost reply finds the port it made: the name is this call's own.
        if (replica.findOne('Logical_Switch_Port', 'name', name)) return true;
        const set = replica.findOne('Address_Set', 'name', pool);
        const ls = replica.findByExternalId('Logical_Switch', Keys.poolV4, pool)[0];
        if (!set || !ls) return false;
        if (this.pools.countFree(pool, reserveFree + 1, replica) <= reserveFree) return false;
        const ip = this.pools.freeAddress(pool, replica);
        if (!ip) return false;
        const mac = macFromIPv4(ip);
        if (macsOnSwitch(replica, ls).has(mac)) return false;
        const prefix = externalIds(set).get(Keys.pool)!.split('/')[1]!;
        // The whole reservation map: another host reserving anything meanwhile makes this re-run.
        tx.verify('Address_Set', set, ['external_ids']);
        tx.mutate('Address_Set', [['_uuid', '==', set._uuid]], [
          ['external_ids', 'insert', new Map([[reservationKey(ip), warmHolder(name)]])],
        ]);
        tx.verify('Logical_Switch', ls, ['name']);
        this.insertWarmPort(tx, ls, { name, ip, prefix, chassis, setName: pool });
        return true;
      },
      { comment: `ovn-docker-driver: warm port for ${pool}` },
    );
    return value ? this.find(name) : undefined;
  }

  /**
   * Create one warm port on the switch of a network of Docker's IPAM, at the
   * lowest address (not below `floor`) that no port of the switch has and
   * Docker keeps for nothing else (gateway, --aux-address): the address
   * Docker's IPAM gives next. Undefined when fewer than `reserveFree`
   * addresses would stay free.
   */
  private async createOnPortSet(setName: string, chassis: string, reserveFree: number, hint: PortSetHint): Promise<WarmPort | undefined> {
    const name = randomBytes(32).toString('hex');
    const { value } = await this.nb.transaction(
      (tx, replica) => {
        if (replica.findOne('Logical_Switch_Port', 'name', name)) return true;
        const ls = switchOfWarmSet(replica, setName);
        const subnet = ls && onlyIPv4Subnet(ls);
        if (!ls || !subnet) return false;
        const set = replica.findOne('Address_Set', 'name', setName);
        const taken = addressesOnSwitch(replica, ls, set);
        for (const ip of hint.avoid?.() ?? []) taken.add(ip);
        const free = freeAddresses(subnet, taken, reserveFree + 1, hint.floor ? { from: hint.floor } : {});
        if (!free.first || free.count <= reserveFree) return false;
        const ip = free.first;
        const mac = macFromIPv4(ip);
        if (macsOnSwitch(replica, ls).has(mac)) return false;
        hint.onChosen?.(ip);
        // No one else writes this key: the address is on no port of the switch (the guard below).
        holdInPortSet(tx, setName, set, ls, reservationKey(ip), warmHolder(name));
        // The switch's ports: an endpoint Docker gave this address meanwhile makes this re-run and pick another.
        tx.verify('Logical_Switch', ls, ['ports']);
        this.insertWarmPort(tx, ls, { name, ip, prefix: subnet.split('/')[1]!, chassis, setName });
        return true;
      },
      // Endpoints joining the switch meanwhile make this re-run: a burst of container starts may take several.
      { comment: `ovn-docker-driver: warm port for network ${setName}`, retries: 20 },
    );
    return value ? this.find(name) : undefined;
  }

  /**
   * The addresses `count` warm ports of `chassis` on a port set should hold:
   * the lowest Docker's IPAM would give next (not below `floor`), counting
   * those its warm ports hold now as free.
   */
  preferredAddresses(setName: string, chassis: string, count: number, floor?: string): Set<string> {
    const ls = switchOfWarmSet(this.replica, setName);
    const subnet = ls && onlyIPv4Subnet(ls);
    if (!ls || !subnet) return new Set();
    const taken = addressesOnSwitch(this.replica, ls, this.replica.findOne('Address_Set', 'name', setName));
    for (const port of this.list(chassis, setName)) if (port.state === 'warm') taken.delete(stripPrefix(port.ipv4));
    return new Set(lowestFree(subnet, taken, count, floor ? { from: floor } : {}));
  }

  private insertWarmPort(tx: Transaction, ls: Row, port: { name: string; ip: string; prefix: string; chassis: string; setName: string }): void {
    const address = addressEntry(macFromIPv4(port.ip), port.ip);
    const row = tx.insert('Logical_Switch_Port', {
      name: port.name,
      addresses: [address],
      port_security: [address],
      external_ids: new Map([
        [Keys.owner, OWNER],
        [Keys.warm, port.chassis],
        [Keys.chassis, port.chassis],
        [Keys.poolV4, port.setName],
        [Keys.ipv4, `${port.ip}/${port.prefix}`],
      ]),
      options: new Map([['requested-chassis', port.chassis]]),
    });
    tx.mutate('Logical_Switch', [['_uuid', '==', ls._uuid]], [['ports', 'insert', [row]]]);
  }

  /**
   * Hand a warm port's address to `holder` (a RequestAddress). False when
   * the port is no longer warm: taken over, claimed or removed meanwhile.
   */
  async claim(port: WarmPort, holder: string): Promise<boolean> {
    const key = reservationKey(port.ipv4);
    const { value } = await this.nb.transaction(
      (tx, replica) => {
        const set = replica.findOne('Address_Set', 'name', port.pool);
        // A retry after a lost reply finds its own swap done (holders are unique to a request).
        if (set && externalIds(set).get(key) === holder) return true;
        if (!set || externalIds(set).get(key) !== warmHolder(port.name)) return false;
        if (!replica.findOne('Logical_Switch_Port', 'name', port.name)) return false;
        tx.guardMatches('Logical_Switch_Port', 'name', port.name, []);
        swapHolder(tx, set, key, warmHolder(port.name), holder);
        return true;
      },
      { comment: `ovn-docker-driver: claim warm port ${port.name}` },
    );
    return value;
  }

  /** Make a claimed port (or a warm one of a port set) the endpoint's: one write, to its Address_Set. Idempotent. */
  async adopt(port: WarmPort, networkId: string, endpointId: string): Promise<EndpointRecord> {
    const key = reservationKey(port.ipv4);
    const mine = adoptedHolder(port.name, endpointId, networkId);
    await this.nb.transaction(
      (tx, replica) => {
        const set = replica.findOne('Address_Set', 'name', port.pool);
        const holder = set && externalIds(set).get(key);
        if (!set || !replica.findOne('Logical_Switch_Port', 'name', port.name)) {
          throw new DomainError(`warm port ${port.name} vanished before endpoint ${endpointId} could adopt it`, 'not-found', { port: port.name, endpointId });
        }
        if (holder === mine) return;
        // Docker's IPAM gives addresses without asking us: CreateEndpoint adopts a port straight from warm.
        const fromWarm = isPortSet(port.pool) && holder === warmHolder(port.name);
        if (!fromWarm && (holder === undefined || parseWarmHolder(holder))) {
          throw new DomainError(`address ${port.ipv4} of port ${port.name} is not claimed for an endpoint (${holder ?? 'free'})`, 'conflict', {
            port: port.name,
            endpointId,
          });
        }
        tx.guardMatches('Logical_Switch_Port', 'name', port.name, []);
        swapHolder(tx, set, key, holder, mine);
      },
      { comment: `ovn-docker-driver: CreateEndpoint ${endpointId} adopts warm port ${port.name}` },
    );
    const row = this.replica.findOne('Logical_Switch_Port', 'name', port.name);
    if (!row) throw new Error(`port ${port.name} vanished right after endpoint ${endpointId} adopted it`);
    return { ...toEndpoint(row), networkId, endpointId };
  }

  /**
   * DeleteEndpoint of an endpoint whose port can serve the next container
   * as it is: instead of deleting the port, make it a warm port of
   * `chassis` again (its names leave DNS with the endpoint). In a pool the
   * address is still Docker's until ReleaseAddress, so the port waits as
   * recycled, and rewarm() makes it warm; in a port set it is warm at once.
   * No write changes the port's addresses or binding, so OVN has no flows
   * to recompute for it.
   */
  async recycle(endpointId: string, chassis: string, pool: string): Promise<WarmPort | undefined> {
    // Once kept, the port no longer names the endpoint: a retry after a lost reply looks for it by this name.
    const earlier = endpointPort(this.replica, pool, endpointId)?.row;
    const kept: WarmState = isPortSet(pool) ? 'warm' : 'recycled';
    const { value } = await this.nb.transaction(
      (tx, replica) => {
        const done = earlier && replica.findOne('Logical_Switch_Port', 'name', String(earlier.name));
        if (done && !externalIds(done).has(Keys.endpointId) && this.toWarmPort(replica, done)?.state === kept) return String(done.name);
        const set = replica.findOne('Address_Set', 'name', pool);
        const ls = switchOfWarmSet(replica, pool);
        if (!ls || (!set && !isPortSet(pool))) return undefined;
        const { row, adopted } = endpointPort(replica, pool, endpointId) ?? {};
        if (!row || !(Array.isArray(ls.ports) && ls.ports.includes(row._uuid))) return undefined;
        const ipv4 = externalIds(row).get(Keys.ipv4);
        if (!ipv4) return undefined;
        const key = reservationKey(ipv4);
        const holder = set ? externalIds(set).get(key) : undefined;
        const name = String(row.name);
        if (isPortSet(pool)) {
          // Docker's IPAM releases the address itself, and gives it to its next container: warm at once.
          // A port made for the endpoint: no one else writes its key, for while the endpoint's port has
          // the address, no warm port is made at it.
          if (adopted) swapHolder(tx, set!, key, adopted[1], warmHolder(name));
          else if (holder === undefined) holdInPortSet(tx, pool, set, ls, key, warmHolder(name));
          else return undefined;
        } else {
          if (holder === undefined || (parseWarmHolder(holder) && !adopted)) return undefined;
          swapHolder(tx, set!, key, holder, recycledHolder(name));
        }
        const ids = externalIds(row);
        // A port made for the endpoint becomes a warm port; names it published leave DNS. Only then is the LSP written.
        if (!adopted || ids.has(Keys.dnsNames)) {
          tx.verify('Logical_Switch_Port', row, ['external_ids']);
          tx.mutate('Logical_Switch_Port', [['_uuid', '==', row._uuid]], [
            ['external_ids', 'delete', [Keys.endpointId, Keys.networkId, Keys.dnsNames]],
            ['external_ids', 'insert', new Map([[Keys.warm, chassis], [Keys.poolV4, pool]])],
          ]);
          removeDnsNames(tx, replica, ls, row);
        }
        return name;
      },
      { comment: `ovn-docker-driver: DeleteEndpoint ${endpointId} keeps its port warm` },
    );
    return value === undefined ? undefined : this.find(value);
  }

  /** ReleaseAddress of a recycled port's address: the port holds it as warm again. */
  async rewarm(port: WarmPort): Promise<boolean> {
    const key = reservationKey(port.ipv4);
    const { value } = await this.nb.transaction(
      (tx, replica) => {
        const set = replica.findOne('Address_Set', 'name', port.pool);
        const holder = recycledHolder(port.name);
        // Only rewarm makes a recycled port warm: a retry after a lost reply finds its own swap done.
        if (set && externalIds(set).get(key) === warmHolder(port.name)) return true;
        if (!set || externalIds(set).get(key) !== holder || !replica.findOne('Logical_Switch_Port', 'name', port.name)) return false;
        tx.guardMatches('Logical_Switch_Port', 'name', port.name, []);
        swapHolder(tx, set, key, holder, warmHolder(port.name));
        return true;
      },
      { comment: `ovn-docker-driver: ReleaseAddress keeps ${port.ipv4} on warm port ${port.name}` },
    );
    return value;
  }

  /**
   * Remove warm or claimed ports, and the addresses they still hold as warm
   * (a claimed port's address is Docker's, and stays).
   */
  async remove(ports: WarmPort[]): Promise<void> {
    if (ports.length === 0) return;
    await this.nb.transaction(
      (tx, replica) => {
        for (const port of ports) {
          const row = replica.findOne('Logical_Switch_Port', 'name', port.name);
          // Adopted meanwhile: an endpoint's now, not ours to remove.
          if (row && !externalIds(row).has(Keys.warm)) continue;
          if (row && this.toWarmPort(replica, row)?.state === 'adopted') continue;
          const ls = row && switchOfWarmSet(replica, port.pool);
          if (ls) tx.mutate('Logical_Switch', [['_uuid', '==', ls._uuid]], [['ports', 'delete', [row!._uuid]]]);
          const key = reservationKey(port.ipv4);
          // The mutation only matches while the port still holds the address as warm.
          tx.mutate(
            'Address_Set',
            [['name', '==', port.pool], ['external_ids', 'includes', new Map([[key, warmHolder(port.name)]])]],
            [['external_ids', 'delete', [key]]],
          );
        }
      },
      { comment: `ovn-docker-driver: remove ${ports.length} warm port(s)` },
    );
  }

  /**
   * Addresses held as warm by ports that no longer exist (their switch was
   * deleted, or a crash came between two writes): give them back.
   */
  async releaseOrphanedAddresses(): Promise<number> {
    const { value } = await this.nb.transaction(
      (tx, replica) => {
        let count = 0;
        for (const set of replica.rows('Address_Set')) {
          const ids = externalIds(set);
          if (ids.get(Keys.owner) !== OWNER) continue;
          const orphans = [...ids].filter(([, holder]) => {
            const port = warmPortOf(holder);
            return port !== undefined && !replica.findOne('Logical_Switch_Port', 'name', port);
          });
          for (const [key, holder] of orphans) {
            tx.mutate('Address_Set', [['_uuid', '==', set._uuid], ['external_ids', 'includes', new Map([[key, holder]])]], [
              ['external_ids', 'delete', [key]],
            ]);
          }
          count += orphans.length;
          // A port set outlives its switch only after a crash between two writes.
          if (isPortSet(String(set.name)) && !switchOfWarmSet(replica, String(set.name))) {
            tx.delete('Address_Set', [['_uuid', '==', set._uuid]]);
          }
        }
        return count;
      },
      { comment: 'ovn-docker-driver: release addresses of vanished warm ports' },
    );
    return value;
  }

  private toWarmPort(replica: Replica, row: Row): WarmPort | undefined {
    const ids = externalIds(row);
    const pool = ids.get(Keys.poolV4);
    const ipv4 = ids.get(Keys.ipv4);
    if (!pool || !ipv4) return undefined;
    const set = replica.findOne('Address_Set', 'name', pool);
    const ls = switchOfWarmSet(replica, pool);
    const name = String(row.name);
    const holder = parseWarmHolder(set && externalIds(set).get(reservationKey(ipv4)));
    // Another port's holder, Docker's, or none at all (released): not this port's any more, as claimed.
    const state: WarmState = holder?.port === name ? holder.state : 'claimed';
    return {
      uuid: row._uuid,
      name,
      pool,
      ipv4,
      mac: portMac(row),
      mtu: ls ? switchMtu(ls) : DEFAULT_MTU,
      state,
      ...(holder?.state === 'adopted' && holder.port === name ? { endpointId: holder.endpointId } : {}),
    };
  }
}

/**
 * The port of an endpoint on the switch of `pool`, and, when it is an
 * adopted warm port, its entry in the set (the endpoint is recorded there only).
 */
function endpointPort(replica: Replica, pool: string, endpointId: string): { row: Row; adopted?: [string, string] } | undefined {
  const set = replica.findOne('Address_Set', 'name', pool);
  const adopted = [...(set ? externalIds(set) : [])].find(([key, holder]) => {
    const parsed = parseWarmHolder(holder);
    return key.startsWith(Keys.poolIp) && parsed?.state === 'adopted' && parsed.endpointId === endpointId;
  });
  const row = adopted
    ? replica.findOne('Logical_Switch_Port', 'name', parseWarmHolder(adopted[1])!.port)
    : replica.findByExternalId('Logical_Switch_Port', Keys.endpointId, endpointId)[0];
  return row && { row, ...(adopted ? { adopted } : {}) };
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

/** The Address_Set recording the warm ports of `chassis` on a switch (see eligiblePools), if it may have any. */
function warmSetOfSwitch(ls: Row, chassis: string): string | undefined {
  const ids = externalIds(ls);
  if (ids.get(Keys.owner) !== OWNER || ids.has(Keys.poolV6) || ids.has(Keys.ipv6Subnets)) return undefined;
  const local = [...ids].some(([key, value]) => key.startsWith(Keys.networkPrefix) && value === chassis);
  if (!local) return undefined;
  const pool = ids.get(Keys.poolV4);
  if (pool) return pool;
  return onlyIPv4Subnet(ls) ? portSetName(String(ls.name)) : undefined;
}

/** The switch's one IPv4 subnet ("10.1.0.0/24"); undefined when it has none or several. */
function onlyIPv4Subnet(ls: Row): string | undefined {
  const subnets = words(externalIds(ls).get(Keys.ipv4Subnets));
  return subnets.length === 1 ? subnets[0] : undefined;
}

/**
 * Set `key` to `holder` in the port set `setName` of switch `ls`, making the
 * set if it does not exist yet (Address_Set names are unique: a concurrent
 * maker makes the transaction re-run and find it). The insert mutation
 * leaves a key someone else holds as it is.
 */
function holdInPortSet(tx: Transaction, setName: string, set: Row | undefined, ls: Row, key: string, holder: string): void {
  if (set) {
    tx.mutate('Address_Set', [['_uuid', '==', set._uuid]], [['external_ids', 'insert', new Map([[key, holder]])]]);
    return;
  }
  tx.insert('Address_Set', {
    name: setName,
    external_ids: new Map([
      [Keys.owner, OWNER],
      [Keys.portsOf, String(ls.name)],
      [key, holder],
    ]),
  });
}
