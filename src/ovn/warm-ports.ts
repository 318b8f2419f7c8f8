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
 * Life of a warm port, all in NB:
 *   warm      LSP with external_ids docker:warm=<chassis>; its address held
 *             in the pool as "warm <port>" (pools.ts)
 *   claimed   RequestAddress gave the address to Docker: the holder is now
 *             Docker's, the LSP still has no endpoint
 *   adopted   CreateEndpoint made it the endpoint's port: docker:warm is
 *             gone, docker:endpoint-id set; from here on it is an endpoint
 *             like any other
 * Any request may take over a warm (not claimed) port's address when the
 * pool has nothing else left or asks for that very address (pools.ts).
 */
import { randomBytes } from 'node:crypto';
import type { OvsdbClient, Replica, Row, RowChange } from '../ovsdb/index.js';
import { externalIds } from './external-ids.js';
import { removeDnsNames } from './dns-rows.js';
import { Keys, OWNER } from './keys.js';
import { macFromIPv4 } from './mac.js';
import type { EndpointRecord } from './networks.js';
import { NetworkError, toEndpoint } from './networks.js';
import { type OvnPools, warmHolder, warmPortOf } from './pools.js';

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
  /** Still holds its address as warm; false once RequestAddress handed the address out. */
  free: boolean;
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

  /** Warm (and claimed, not yet adopted) ports kept by `chassis`. */
  list(chassis: string, pool?: string): WarmPort[] {
    const out: WarmPort[] = [];
    for (const row of this.replica.findByExternalId('Logical_Switch_Port', Keys.warm, chassis)) {
      const port = this.toWarmPort(this.replica, row);
      if (port && (pool === undefined || port.pool === pool)) out.push(port);
    }
    return out;
  }

  /** The port by name, if it is still a warm or claimed port. */
  find(name: string): WarmPort | undefined {
    const row = this.replica.findOne('Logical_Switch_Port', 'name', name);
    return row && externalIds(row).has(Keys.warm) ? this.toWarmPort(this.replica, row) : undefined;
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
   * address (the one a request would get next), unless fewer than `reserveFree` addresses would stay free for
   * endpoints. Returns undefined when there is no room.
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
        if (macInUse(replica, ls, mac)) return false;
        const prefix = externalIds(set).get(Keys.pool)!.split('/')[1]!;
        // The whole reservation map: another host reserving anything meanwhile makes this re-run.
        tx.verify('Address_Set', set, ['external_ids']);
        tx.mutate('Address_Set', [['_uuid', '==', set._uuid]], [
          ['external_ids', 'insert', new Map([[`${Keys.poolIp}${ip}`, warmHolder(name)]])],
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
    const key = `${Keys.poolIp}${stripPrefix(port.ipv4)}`;
    const { value } = await this.nb.transaction(
      (tx, replica) => {
        const set = replica.findOne('Address_Set', 'name', port.pool);
        if (!set || externalIds(set).get(key) !== warmHolder(port.name)) return false;
        if (!replica.findOne('Logical_Switch_Port', 'name', port.name)) return false;
        tx.guardMatches('Address_Set', 'name', port.pool, [['external_ids', 'includes', new Map([[key, warmHolder(port.name)]])]]);
        tx.guardMatches('Logical_Switch_Port', 'name', port.name, []);
        tx.mutate('Address_Set', [['_uuid', '==', set._uuid]], [
          ['external_ids', 'delete', [key]],
          ['external_ids', 'insert', new Map([[key, holder]])],
        ]);
        return true;
      },
      { comment: `ovn-docker-driver: claim warm port ${port.name}` },
    );
    return value;
  }

  /**
   * The claimed port of `chassis` on `pool`'s switch with this address, which
   * CreateEndpoint may adopt.
   */
  findClaimed(chassis: string, pool: string, ipv4: string): WarmPort | undefined {
    const ip = stripPrefix(ipv4);
    return this.list(chassis, pool).find((p) => !p.free && stripPrefix(p.ipv4) === ip);
  }

  /** Make a claimed port the endpoint's. Idempotent: an adopted port is returned as it is. */
  async adopt(port: WarmPort, networkId: string, endpointId: string): Promise<EndpointRecord> {
    await this.nb.transaction(
      (tx, replica) => {
        const row = replica.findOne('Logical_Switch_Port', 'name', port.name);
        if (!row) throw new NetworkError(`warm port ${port.name} vanished before endpoint ${endpointId} could adopt it`, 'not-found');
        const ids = externalIds(row);
        if (ids.get(Keys.endpointId) === endpointId) return;
        if (!ids.has(Keys.warm)) throw new NetworkError(`port ${port.name} already belongs to endpoint ${ids.get(Keys.endpointId)}`, 'conflict');
        tx.verify('Logical_Switch_Port', row, ['external_ids']);
        tx.mutate('Logical_Switch_Port', [['_uuid', '==', row._uuid]], [
          ['external_ids', 'delete', [Keys.warm, Keys.poolV4]],
          ['external_ids', 'insert', new Map([[Keys.networkId, networkId], [Keys.endpointId, endpointId]])],
        ]);
      },
      { comment: `ovn-docker-driver: CreateEndpoint ${endpointId} adopts warm port ${port.name}` },
    );
    const row = this.replica.findOne('Logical_Switch_Port', 'name', port.name);
    if (!row) throw new Error(`port ${port.name} vanished right after endpoint ${endpointId} adopted it`);
    return toEndpoint(row);
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
        const row = replica.findByExternalId('Logical_Switch_Port', Keys.endpointId, endpointId)[0];
        const ls = replica.findByExternalId('Logical_Switch', Keys.poolV4, pool)[0];
        if (!row || !ls || !(Array.isArray(ls.ports) && ls.ports.includes(row._uuid))) return undefined;
        tx.verify('Logical_Switch_Port', row, ['external_ids']);
        tx.mutate('Logical_Switch_Port', [['_uuid', '==', row._uuid]], [
          ['external_ids', 'delete', [Keys.endpointId, Keys.networkId, Keys.dnsNames]],
          ['external_ids', 'insert', new Map([[Keys.warm, chassis], [Keys.poolV4, pool]])],
        ]);
        removeDnsNames(tx, replica, ls, row);
        return String(row.name);
      },
      { comment: `ovn-docker-driver: DeleteEndpoint ${endpointId} keeps its port warm` },
    );
    return value === undefined ? undefined : this.find(value);
  }

  /** ReleaseAddress of a recycled port's address: the port holds it as warm again. */
  async rewarm(port: WarmPort): Promise<boolean> {
    const key = `${Keys.poolIp}${stripPrefix(port.ipv4)}`;
    const { value } = await this.nb.transaction(
      (tx, replica) => {
        const set = replica.findOne('Address_Set', 'name', port.pool);
        const holder = set && externalIds(set).get(key);
        const row = replica.findOne('Logical_Switch_Port', 'name', port.name);
        if (!set || holder === undefined || warmPortOf(holder) || !row || !externalIds(row).has(Keys.warm)) return false;
        tx.guardMatches('Address_Set', 'name', port.pool, [['external_ids', 'includes', new Map([[key, holder]])]]);
        tx.verify('Logical_Switch_Port', row, ['external_ids']);
        tx.mutate('Address_Set', [['_uuid', '==', set._uuid]], [
          ['external_ids', 'delete', [key]],
          ['external_ids', 'insert', new Map([[key, warmHolder(port.name)]])],
        ]);
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
          for (const ls of row ? replica.findByExternalId('Logical_Switch', Keys.poolV4, port.pool) : []) {
            tx.mutate('Logical_Switch', [['_uuid', '==', ls._uuid]], [['ports', 'delete', [row!._uuid]]]);
          }
          const key = `${Keys.poolIp}${stripPrefix(port.ipv4)}`;
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
    return {
      uuid: row._uuid,
      name: String(row.name),
      pool,
      ipv4,
      mac: first.split(' ')[0] ?? '',
      mtu: Number((ls && externalIds(ls).get(Keys.mtu)) ?? '1442'),
      free: set !== undefined && externalIds(set).get(`${Keys.poolIp}${stripPrefix(ipv4)}`) === warmHolder(String(row.name)),
    };
  }
}

function macInUse(replica: Replica, ls: Row, mac: string): boolean {
  for (const uuid of Array.isArray(ls.ports) ? ls.ports : []) {
    const port = replica.get('Logical_Switch_Port', String(uuid));
    for (const addr of Array.isArray(port?.addresses) ? port.addresses : []) {
      if (String(addr).split(' ')[0]!.toLowerCase() === mac) return true;
    }
  }
  return false;
}

function stripPrefix(cidr: string): string {
  const slash = cidr.indexOf('/');
  return slash < 0 ? cidr : cidr.slice(0, slash);
}
