/**
 * Warm ports as NB rows (docs/warm-ports.md): a Logical_Switch_Port with
 * external_ids docker:warm=<chassis>, made before its container, whose state
 * is the holder of its address in the pool (pools.ts) or port set
 * (port-sets.ts), so that no step of a container's life writes to the port:
 * warm, claimed (Docker's holder), adopted (an endpoint's) or recycled.
 * Where a new one goes is warm-port-creation.ts.
 */
import type { OvsdbClient, Replica, Row, RowChange } from '../ovsdb/index.js';
import { stripPrefix } from '../net/addressing.js';
import { DomainError } from '../errors.js';
import { externalIds } from './external-ids.js';
import { removeDnsNames } from './dns-rows.js';
import { Keys, OWNER } from './keys.js';
import { type OvnPools, swapHolder } from './pools.js';
import { holdInPortSet, isPortSet, switchOfWarmSet, warmSetOfSwitch } from './port-sets.js';
import {
  adoptedHolder,
  DEFAULT_MTU,
  parseWarmHolder,
  portMac,
  recycledHolder,
  reservationKey,
  switchMtu,
  toEndpoint,
  warmHolder,
  warmPortOf,
  type EndpointRecord,
} from './records.js';
import { createWarmPorts, preferredAddresses, type PortSetHint } from './warm-port-creation.js';
import { portTag } from './vlan-tags.js';

export type WarmState = 'warm' | 'claimed' | 'adopted' | 'recycled';

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
  /** Nested mode: its VLAN tag on the VM's bridge. */
  tag?: number;
}

export class OvnWarmPorts {
  constructor(
    private readonly nb: OvsdbClient,
    private readonly pools: OvnPools,
    /** Nested mode: the VM's own port, parent of every port made here (vlan-tags.ts). */
    private readonly parent?: string,
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
   * Create up to `count` warm ports of `chassis` for the pool or port set
   * `pool`, in one transaction (warm-port-creation.ts). None when there is no room.
   */
  async create(pool: string, chassis: string, count: number, reserveFree: number, hint: PortSetHint = {}): Promise<WarmPort[]> {
    const owner = { chassis, ...(this.parent ? { parent: this.parent } : {}) };
    const names = await createWarmPorts(this.nb, this.pools, pool, owner, count, reserveFree, hint);
    return names.flatMap((name) => this.find(name) ?? []);
  }

  /**
   * The addresses `count` warm ports of `chassis` on a port set should hold:
   * the lowest Docker's IPAM would give next (not below `floor`), counting
   * those its warm ports hold now as free.
   */
  preferredAddresses(setName: string, chassis: string, count: number, floor?: string): Set<string> {
    const warmIps = this.list(chassis, setName).flatMap((p) => (p.state === 'warm' ? [stripPrefix(p.ipv4)] : []));
    return preferredAddresses(this.replica, setName, warmIps, count, floor);
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
          else if (holder === undefined) holdInPortSet(tx, pool, set, ls, new Map([[key, warmHolder(name)]]));
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
    const tag = row.parent_name ? portTag(row) : undefined;
    return {
      uuid: row._uuid,
      name,
      pool,
      ipv4,
      mac: portMac(row),
      mtu: ls ? switchMtu(ls) : DEFAULT_MTU,
      state,
      ...(holder?.state === 'adopted' && holder.port === name ? { endpointId: holder.endpointId } : {}),
      ...(tag !== undefined ? { tag } : {}),
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

