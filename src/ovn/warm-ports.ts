/**
 * Warm ports: logical switch ports a host creates ahead of time on the
 * switches of our IPAM's pools, with an address of the pool, so that a
 * container start finds its port already bound and its flows installed.
 *
 * Why: ovn-northd (before 23.09) recomputes every logical flow on each NB
 * change, so a new port's binding appears hundreds of milliseconds after
 * the write on a large NB. With our IPAM the driver chooses the address, so
 * the port (and its veth, see driver/warm-pool.ts) can exist before Docker
 * asks for it, complete with addresses and port_security.
 *
 * A warm port is an LSP with external_ids docker:warm=<chassis>, which it
 * keeps all its life; its state is the holder of its address in the pool
 * (pools.ts), so that no step of a container's life writes to the LSP (on
 * OVN < 23.09 an LSP write costs ovn-northd a full recompute; an Address_Set
 * write does not):
 *   warm      "warm <port>": ready for the next container
 *   claimed   Docker's holder: RequestAddress gave the address out
 *   adopted   "ep <port> <endpoint> <network>": CreateEndpoint made it the
 *             endpoint's port
 *   recycled  "recycled <port>": DeleteEndpoint kept it for the next
 *             container; ReleaseAddress makes it warm again
 * Any request may take over a warm port's address when the pool has nothing
 * else left or asks for that very address (pools.ts).
 */
import { randomBytes } from 'node:crypto';
import type { OvsdbClient, Replica, Row, RowChange } from '../ovsdb/index.js';
import { stripPrefix } from './addressing.js';
import { externalIds } from './external-ids.js';
import { removeDnsNames } from './dns-rows.js';
import { Keys, OWNER } from './keys.js';
import { macFromIPv4 } from './mac.js';
import type { EndpointRecord } from './networks.js';
import { macsOnSwitch, NetworkError, toEndpoint } from './networks.js';
import { adoptedHolder, type OvnPools, parseWarmHolder, recycledHolder, reservationKey, swapHolder, warmHolder, warmPortOf } from './pools.js';

export type WarmState = 'warm' | 'claimed' | 'adopted' | 'recycled';

export interface WarmPort {
  uuid: string;
  /** The LSP name, also external_ids:iface-id on OVS: random 64 hex digits, like an endpoint id. */
  name: string;
  /** The pool (Address_Set name) whose switch the port is on. */
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
   * Switches a warm port may go on for `chassis`: our IPAM's IPv4-only pools
   * with a network of this host attached. (Dual-stack endpoints ask two pools
   * for their two addresses; one port cannot answer both.)
   */
  eligiblePools(chassis: string): string[] {
    const out: string[] = [];
    for (const row of this.replica.rows('Logical_Switch')) {
      const ids = externalIds(row);
      const pool = ids.get(Keys.poolV4);
      if (ids.get(Keys.owner) !== OWNER || !pool || ids.has(Keys.poolV6) || ids.has(Keys.ipv6Subnets)) continue;
      const local = [...ids].some(([key, value]) => key.startsWith(Keys.networkPrefix) && value === chassis);
      if (local) out.push(pool);
    }
    return out;
  }

  /**
   * Create one warm port on the pool's switch, holding the lowest free
   * address (the one a request would get next), unless fewer than
   * `reserveFree` addresses would stay free for endpoints. Returns undefined
   * when there is no room.
   */
  async create(pool: string, chassis: string, reserveFree: number): Promise<WarmPort | undefined> {
    const name = randomBytes(32).toString('hex');
    const { value } = await this.nb.transaction(
      (tx, replica) => {
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
        const address = `${mac} ${ip}`;
        const port = tx.insert('Logical_Switch_Port', {
          name,
          addresses: [address],
          port_security: [address],
          external_ids: new Map([
            [Keys.owner, OWNER],
            [Keys.warm, chassis],
            [Keys.chassis, chassis],
            [Keys.poolV4, pool],
            [Keys.ipv4, `${ip}/${prefix}`],
          ]),
          options: new Map([['requested-chassis', chassis]]),
        });
        tx.mutate('Logical_Switch', [['_uuid', '==', ls._uuid]], [['ports', 'insert', [port]]]);
        return true;
      },
      { comment: `ovn-docker-driver: warm port for ${pool}` },
    );
    return value ? this.find(name) : undefined;
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

  /** Make a claimed port the endpoint's: one write, to the pool. Idempotent. */
  async adopt(port: WarmPort, networkId: string, endpointId: string): Promise<EndpointRecord> {
    const key = reservationKey(port.ipv4);
    const mine = adoptedHolder(port.name, endpointId, networkId);
    await this.nb.transaction(
      (tx, replica) => {
        const set = replica.findOne('Address_Set', 'name', port.pool);
        const holder = set && externalIds(set).get(key);
        if (!set || !replica.findOne('Logical_Switch_Port', 'name', port.name)) {
          throw new NetworkError(`warm port ${port.name} vanished before endpoint ${endpointId} could adopt it`, 'not-found');
        }
        if (holder === mine) return;
        if (holder === undefined || parseWarmHolder(holder)) {
          throw new NetworkError(`address ${port.ipv4} of port ${port.name} is not claimed for an endpoint (${holder ?? 'free'})`, 'conflict');
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
   * as it is: instead of deleting the port, make it a claimed warm port of
   * `chassis` again (its names leave DNS with the endpoint). Its address is
   * still Docker's until ReleaseAddress, which then makes it warm (rewarm).
   * Neither write changes the port's addresses or binding, so OVN has no
   * flows to recompute for it.
   */
  async recycle(endpointId: string, chassis: string, pool: string): Promise<WarmPort | undefined> {
    const { value } = await this.nb.transaction(
      (tx, replica) => {
        const set = replica.findOne('Address_Set', 'name', pool);
        const ls = replica.findByExternalId('Logical_Switch', Keys.poolV4, pool)[0];
        if (!set || !ls) return undefined;
        // An adopted warm port: the endpoint is recorded in the pool only.
        const adopted = [...externalIds(set)].find(([key, holder]) => {
          const parsed = parseWarmHolder(holder);
          return key.startsWith(Keys.poolIp) && parsed?.state === 'adopted' && parsed.endpointId === endpointId;
        });
        const row = adopted
          ? replica.findOne('Logical_Switch_Port', 'name', parseWarmHolder(adopted[1])!.port)
          : replica.findByExternalId('Logical_Switch_Port', Keys.endpointId, endpointId)[0];
        if (!row || !(Array.isArray(ls.ports) && ls.ports.includes(row._uuid))) return undefined;
        const ipv4 = externalIds(row).get(Keys.ipv4);
        if (!ipv4) return undefined;
        const key = reservationKey(ipv4);
        const holder = externalIds(set).get(key);
        if (holder === undefined || (parseWarmHolder(holder) && !adopted)) return undefined;
        swapHolder(tx, set, key, holder, recycledHolder(String(row.name)));
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
        return String(row.name);
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
          for (const ls of row ? replica.findByExternalId('Logical_Switch', Keys.poolV4, port.pool) : []) {
            tx.mutate('Logical_Switch', [['_uuid', '==', ls._uuid]], [['ports', 'delete', [row!._uuid]]]);
          }
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
    const ls = replica.findByExternalId('Logical_Switch', Keys.poolV4, pool)[0];
    const first = Array.isArray(row.addresses) ? String(row.addresses[0] ?? '') : '';
    const name = String(row.name);
    const holder = parseWarmHolder(set && externalIds(set).get(reservationKey(ipv4)));
    // Another port's holder, Docker's, or none at all (released): not this port's any more, as claimed.
    const state: WarmState = holder?.port === name ? holder.state : 'claimed';
    return {
      uuid: row._uuid,
      name,
      pool,
      ipv4,
      mac: first.split(' ')[0] ?? '',
      mtu: Number((ls && externalIds(ls).get(Keys.mtu)) ?? '1442'),
      state,
      ...(holder?.state === 'adopted' && holder.port === name ? { endpointId: holder.endpointId } : {}),
    };
  }
}
