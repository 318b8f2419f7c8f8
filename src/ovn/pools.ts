/**
 * Cluster-wide IPAM in the OVN Northbound database, so that every host sees
 * the same allocations.
 *
 * A pool is an Address_Set row (a root table with a unique name, unused by
 * any ACL, so it costs OVN nothing): name `docker_pool_<subnet>`, and in its
 * external_ids:
 *   docker:pool          the subnet ("10.1.0.0/24")
 *   docker:range         the sub-range addresses come from (--ip-range), if any
 *   docker:user:<token>  one key per RequestPool (a network on some host): "<chassis> <state>"
 *   docker:ip:<address>  one key per reserved address: who holds it. Warm ports
 *                        (warm-ports.ts) add "warm <port>" (any request may take it
 *                        over when nothing else is left or it asks for that one),
 *                        "ep <port> <endpoint> <network>" and "recycled <port>"
 *                        (records.ts reads and writes these)
 *
 * Reserving an address is a map `insert` mutation, which the server applies
 * only when the key is absent; the replica then tells whether our value won.
 * Two hosts reserving the same address at the same instant: exactly one of
 * them sees its own value, the other tries the next address.
 */
import { randomBytes } from 'node:crypto';
import { DomainError } from '../errors.js';
import type { OvsdbClient, Replica, Row, Transaction } from '../ovsdb/index.js';
import { addressBounds, bigToIPv4, bigToIPv6, contains, lowestFree, networkOf, parseCidr, stripPrefix } from '../net/addressing.js';
import { externalIds } from './external-ids.js';
import { OWNER, Keys } from './keys.js';
import { parseWarmHolder, reservationKey, warmPortOf } from './records.js';

export const ADDRESS_SPACE = 'ovn';
const GATEWAY = 'gateway';
const AUX = 'aux';
/** Pool users whose network does not exist yet: explicit addresses they reserve are --aux-address ones. */
const PENDING = 'pending';

/**
 * In `tx`, hand an address of the pool `set` from holder `from` to holder
 * `to`: a compare-and-swap, whose guard makes the transaction re-run from
 * the replica when the holder changed meanwhile.
 */
export function swapHolder(tx: Transaction, set: Row, key: string, from: string, to: string): void {
  tx.guardMatches('Address_Set', 'name', String(set.name), [['external_ids', 'includes', new Map([[key, from]])]]);
  tx.mutate('Address_Set', [['_uuid', '==', set._uuid]], [
    ['external_ids', 'delete', [key]],
    ['external_ids', 'insert', new Map([[key, to]])],
  ]);
}

/** An address a ReleaseAddress may free (OvnPools.releasable). */
export interface Reservation {
  /** The pool's Address_Set name. */
  pool: string;
  ip: string;
  key: string;
  holder: string;
}

interface PoolUser {
  name: string;
  token: string;
  ids: Map<string, string>;
  subnet: string;
  /** "<chassis> <network id, or pending>" */
  user: string;
}

export interface PoolLease {
  poolId: string;
  pool: string;
}

export interface PoolRequest {
  /** "" lets the driver choose a free /24 from `defaultPools` (IPv4 only: an IPv6 pool needs its subnet). */
  pool: string;
  subPool: string;
  v6: boolean;
  chassis: string;
}

export class OvnPools {
  constructor(
    private readonly nb: OvsdbClient,
    /** Where pools come from when Docker asks for one without --subnet. */
    private readonly defaultPools = '10.128.0.0/9',
  ) {}

  private get replica(): Replica {
    return this.nb.replica;
  }

  /**
   * Join (or create) the pool of a subnet; every call is one more user of it.
   * Without a subnet, a new pool on the first /24 of `defaultPools` that no
   * pool has: chosen in the transaction, and never one another network has.
   */
  async requestPool(req: PoolRequest): Promise<PoolLease> {
    // The default range is IPv4: an IPv6 pool chosen from it would fail CreateNetwork later, less clearly.
    if (!req.pool && req.v6) {
      throw new DomainError('an IPv6 pool of this IPAM needs --subnet (e.g. --ipv6 --subnet fd00:1::/64): it has no default IPv6 range', 'invalid');
    }
    const explicit = req.pool ? this.subnetOf(req.pool, req.v6) : undefined;
    const range = req.subPool ? this.subnetOf(req.subPool, req.v6) : '';
    const token = randomBytes(6).toString('hex');
    const userKey = `${Keys.poolUser}${token}`;
    const { value: subnet } = await this.nb.transaction(
      (tx, replica) => {
        // A retry after a lost reply finds its own user key: that pool is this request's.
        for (const row of replica.rows('Address_Set')) {
          const ids = externalIds(row);
          if (ids.has(userKey)) return ids.get(Keys.pool)!;
        }
        const subnet = explicit ?? this.chooseDefaultPool(replica);
        if (range && !contains(subnet, range.split('/')[0]!)) {
          throw new DomainError(`--ip-range ${range} is not inside the pool ${subnet}`, 'invalid', { pool: subnet, range });
        }
        const name = poolName(subnet);
        const row = replica.findOne('Address_Set', 'name', name);
        const user = new Map([[userKey, `${req.chassis} ${PENDING}`]]);
        if (row) {
          const existingRange = externalIds(row).get(Keys.poolRange) ?? '';
          if (existingRange !== range) {
            throw new DomainError(
              `pool ${subnet} is already in use with ${existingRange ? `--ip-range ${existingRange}` : 'no --ip-range'}; ` +
                'every network on it must use the same range',
              'conflict',
              { pool: subnet, range },
            );
          }
          tx.mutate('Address_Set', [['_uuid', '==', row._uuid]], [['external_ids', 'insert', user]]);
          return subnet;
        }
        // Someone making it first makes this re-run: an explicit pool is then joined, a default one chosen anew.
        tx.guardAbsent('Address_Set', 'name', name);
        const ids = new Map([[Keys.owner, OWNER], [Keys.pool, subnet], ...user]);
        if (range) ids.set(Keys.poolRange, range);
        tx.insert('Address_Set', { name, external_ids: ids });
        return subnet;
      },
      // Each host making a default pool at the same instant costs the others one re-run.
      { comment: `ovn-docker-driver: RequestPool ${explicit ?? 'by default'}`, retries: 20 },
    );
    return { poolId: `${poolName(subnet)}/${token}`, pool: subnet };
  }

  /** Drop one user of a pool; the last one out deletes it with every reservation in it. */
  async releasePool(poolId: string): Promise<void> {
    const { name, token } = parsePoolId(poolId);
    await this.nb.transaction(
      (tx, replica) => {
        const row = replica.findOne('Address_Set', 'name', name);
        if (!row) return;
        const ids = externalIds(row);
        const users = [...ids.keys()].filter((k) => k.startsWith(Keys.poolUser));
        const mine = `${Keys.poolUser}${token}`;
        if (users.length === 0 || (users.length === 1 && users[0] === mine)) {
          tx.verify('Address_Set', row, ['external_ids']);
          tx.delete('Address_Set', [['_uuid', '==', row._uuid]]);
        } else if (ids.has(mine)) {
          tx.mutate('Address_Set', [['_uuid', '==', row._uuid]], [['external_ids', 'delete', [mine]]]);
        }
      },
      { comment: `ovn-docker-driver: ReleasePool ${poolId}` },
    );
  }

  /** The pool's users on this host have a network now: explicit addresses they ask for are endpoints (--ip), not --aux-address. */
  async markNetworkCreated(subnet: string, chassis: string, networkId: string): Promise<void> {
    await this.nb.transaction((tx, replica) => {
      const row = replica.findOne('Address_Set', 'name', poolName(subnet));
      if (!row) return;
      const pending = new Map<string, string>();
      for (const [key, value] of externalIds(row)) {
        if (key.startsWith(Keys.poolUser) && value === `${chassis} ${PENDING}`) pending.set(key, `${chassis} ${networkId}`);
      }
      if (pending.size === 0) return;
      tx.mutate('Address_Set', [['_uuid', '==', row._uuid]], [
        ['external_ids', 'delete', [...pending.keys()]],
        ['external_ids', 'insert', pending],
      ]);
    });
  }

  /**
   * What a dynamic endpoint request needs to take a warm port's address
   * instead (src/warm): the pool's Address_Set, a new holder of this pool
   * user, and the prefix to answer with. The PoolID is checked as for
   * requestAddress.
   */
  warmRequest(poolId: string): { pool: string; holder: string; prefix: string } {
    const { name, token, subnet } = this.lease(poolId);
    return { pool: name, holder: endpointHolder(token), prefix: subnet.split('/')[1]! };
  }

  /**
   * Reserve an address: the gateway (shared by every host using the pool),
   * a given one (--ip, --aux-address), or the lowest free one. `container`:
   * the engine named the container the address is for (29+), so a given one
   * is --ip even before this lease's network is known to exist (29 asks for
   * its networks' pools again when it restarts, and creates no network then).
   */
  async requestAddress(poolId: string, address: string, kind: 'gateway' | 'endpoint' | 'container'): Promise<string> {
    const { name, token, ids, subnet, user } = this.lease(poolId);
    const prefix = subnet.split('/')[1]!;

    if (address) {
      const ip = this.addressIn(subnet, address);
      // Before its network exists, a pool user reserves only the gateway and --aux-address ones; other hosts reserve the same.
      const shared = kind === 'gateway' ? GATEWAY : kind === 'endpoint' && user.endsWith(` ${PENDING}`) ? AUX : undefined;
      const value = shared ?? endpointHolder(token);
      const holder = await this.reserve(name, ip, value);
      // A warm port only keeps an address ready: an explicit request takes it over.
      if (holder !== value && !(warmPortOf(holder) && (await this.takeOverWarm(name, ip, value)))) {
        throw new DomainError(`address ${ip} is already in use in pool ${subnet}`, 'conflict', { pool: subnet, address: ip });
      }
      return `${ip}/${prefix}`;
    }
    if (kind === 'gateway') {
      const ip = firstHost(subnet);
      const holder = await this.reserve(name, ip, GATEWAY);
      if (holder !== GATEWAY) throw new DomainError(`the first address ${ip} of pool ${subnet} is taken`, 'conflict', { pool: subnet, address: ip });
      return `${ip}/${prefix}`;
    }
    const range = ids.get(Keys.poolRange) || subnet;
    for (let attempt = 0; attempt < 64; attempt++) {
      const mine = endpointHolder(token);
      const ip = this.freeAddress(name);
      if (!ip) {
        // Full, but for addresses warm ports (of any host) keep ready: take one over.
        const taken = await this.takeOverWarm(name, undefined, mine);
        if (taken) return `${taken}/${prefix}`;
        throw new DomainError(`no free address left in pool ${subnet}${range !== subnet ? ` (range ${range})` : ''}`, 'exhausted', { pool: subnet });
      }
      if ((await this.reserve(name, ip, mine)) === mine) return `${ip}/${prefix}`;
      // Another host took it in the same instant: the replica now knows, try the next one.
    }
    throw new DomainError(`could not reserve an address in pool ${subnet}: too much contention`, 'conflict', { pool: subnet });
  }

  /**
   * Free an endpoint's address, if releasable() says it is this pool user's;
   * an address already free stays free. The gateway and --aux-address ones
   * live as long as the pool.
   */
  async releaseAddress(poolId: string, address: string): Promise<void> {
    await this.nb.transaction(
      (tx, replica) => {
        const held = this.releasable(poolId, address, replica);
        if (!held) return;
        // Compare-and-swap: the key goes only while the server still has the holder read here.
        tx.mutate('Address_Set', [['name', '==', held.pool], ['external_ids', 'includes', new Map([[held.key, held.holder]])]], [
          ['external_ids', 'delete', [held.key]],
        ]);
      },
      { comment: `ovn-docker-driver: ReleaseAddress ${stripPrefix(address)} in ${poolId}` },
    );
  }

  /**
   * Check a ReleaseAddress before anything changes: the PoolID must name a
   * pool of ours that it is a user of, and the address lie in the pool's
   * subnet (--ip-range or not); otherwise a DomainError. Returns the
   * reservation when it is this pool user's to free, undefined when there is
   * nothing to free: the address is free, the gateway, an --aux-address, a
   * warm port's, or another user's (a release retried after a lost reply
   * must not free the reservation someone made since).
   */
  releasable(poolId: string, address: string, replica: Replica = this.replica): Reservation | undefined {
    const { name, token, ids, subnet, user } = this.lease(poolId, replica);
    const ip = this.addressIn(subnet, address);
    const key = reservationKey(ip);
    const holder = ids.get(key);
    if (holder === undefined || !heldByUser(replica, holder, token, user)) return undefined;
    // An adopted warm port records its endpoint only here: freed while the port exists (a DeleteEndpoint that
    // failed), the port would hold the address for no one. DeleteEndpoint, or the orphan sweep, removes it first.
    const adopted = parseWarmHolder(holder);
    if (adopted?.state === 'adopted' && replica.findOne('Logical_Switch_Port', 'name', adopted.port)) return undefined;
    return { pool: name, ip, key, holder };
  }

  /** The PoolID of a network of this host on a pool (its user since the network exists), if there is one. */
  poolIdOf(pool: string, chassis: string, networkId: string): string | undefined {
    const row = this.replica.findOne('Address_Set', 'name', pool);
    for (const [key, value] of row ? externalIds(row) : []) {
      if (key.startsWith(Keys.poolUser) && value === `${chassis} ${networkId}`) return `${pool}/${key.slice(Keys.poolUser.length)}`;
    }
    return undefined;
  }

  /** Name of the pool that holds `subnet`, if our IPAM manages it. */
  poolOf(subnet: string): string | undefined {
    const name = poolName(subnet);
    return this.replica.findOne('Address_Set', 'name', name) ? name : undefined;
  }

  /** Insert `key -> value` unless present; returns whoever holds the address afterwards. */
  private async reserve(name: string, ip: string, value: string): Promise<string> {
    const key = reservationKey(ip);
    await this.nb.transaction(
      (tx, replica) => {
        const row = replica.findOne('Address_Set', 'name', name);
        if (!row) throw new DomainError(`pool ${name} no longer exists`, 'not-found', { pool: name });
        if (externalIds(row).has(key)) return;
        tx.mutate('Address_Set', [['_uuid', '==', row._uuid]], [['external_ids', 'insert', new Map([[key, value]])]]);
      },
      { comment: `ovn-docker-driver: RequestAddress ${ip}` },
    );
    // The server sent the update before its reply: the replica shows who won.
    const row = this.replica.findOne('Address_Set', 'name', name);
    return (row && externalIds(row).get(key)) ?? '';
  }

  /**
   * Give an address a warm port holds to `holder`, and remove that port,
   * in one transaction: `ip`'s, or (undefined) any warm port's in the pool.
   * A port already handed to an endpoint no longer holds its address as
   * "warm", so the guard never lets this take an endpoint's address.
   * The warm port's host cleans up its host side when it sees the port gone.
   */
  private async takeOverWarm(name: string, ip: string | undefined, holder: string): Promise<string | undefined> {
    const { value } = await this.nb.transaction(
      (tx, replica) => {
        const row = replica.findOne('Address_Set', 'name', name);
        if (!row) return undefined;
        const ours = (key: string) => key.startsWith(Keys.poolIp) && (ip === undefined || key === reservationKey(ip));
        // A retry after a lost reply finds its own swap done: that address is the one taken, not a second.
        const done = [...externalIds(row)].find(([key, value]) => ours(key) && value === holder);
        if (done) return done[0].slice(Keys.poolIp.length);
        const entry = [...externalIds(row)].find(([key, value]) => ours(key) && warmPortOf(value));
        if (!entry) return undefined;
        const [key, warmValue] = entry;
        swapHolder(tx, row, key, warmValue, holder);
        const port = replica.findOne('Logical_Switch_Port', 'name', warmPortOf(warmValue)!);
        for (const ls of port ? replica.findByExternalId('Logical_Switch', Keys.poolV4, name) : []) {
          tx.mutate('Logical_Switch', [['_uuid', '==', ls._uuid]], [['ports', 'delete', [port!._uuid]]]);
        }
        return key.slice(Keys.poolIp.length);
      },
      { comment: `ovn-docker-driver: take over a warm port's address in ${name}` },
    );
    return value;
  }

  /** The lowest address nobody holds. */
  freeAddress(name: string, replica: Replica = this.replica): string | undefined {
    return this.lowestFree(name, 1, replica)[0];
  }

  /** The `limit` lowest addresses of the pool nobody holds, in order. */
  lowestFree(name: string, limit: number, replica: Replica = this.replica): string[] {
    const row = replica.findOne('Address_Set', 'name', name);
    if (!row) return [];
    const ids = externalIds(row);
    const subnet = ids.get(Keys.pool)!;
    const taken = new Set<string>();
    for (const key of ids.keys()) {
      if (key.startsWith(Keys.poolIp)) taken.add(key.slice(Keys.poolIp.length));
    }
    // An IPv4 --ip-range's own first and last addresses look like network and broadcast addresses to people and tools: skip them too.
    return lowestFree(subnet, taken, limit, { range: ids.get(Keys.poolRange) || subnet, skipRangeEdges: true });
  }

  /** The pool a PoolID names and its user's value ("<chassis> <state>"); a DomainError unless both exist. */
  private lease(poolId: string, replica: Replica = this.replica): PoolUser {
    const { name, token } = parsePoolId(poolId);
    const row = replica.findOne('Address_Set', 'name', name);
    const ids = row ? externalIds(row) : new Map<string, string>();
    const subnet = ids.get(Keys.pool);
    if (!subnet || ids.get(Keys.owner) !== OWNER) {
      throw new DomainError(`pool ${poolId} does not exist (released, or never requested)`, 'not-found', { poolId });
    }
    const user = ids.get(`${Keys.poolUser}${token}`);
    if (user === undefined) throw new DomainError(`pool ${poolId} was released`, 'not-found', { poolId });
    return { name, token, ids, subnet, user };
  }

  private subnetOf(text: string, v6: boolean): string {
    try {
      return networkOf(parseCidr(text, v6 ? 6 : 4));
    } catch (err) {
      throw new DomainError(`invalid pool ${text}: ${(err as Error).message}`, 'invalid', { pool: text });
    }
  }

  private addressIn(subnet: string, address: string): string {
    const ip = stripPrefix(address);
    let cidr;
    try {
      cidr = parseCidr(`${ip}/${subnet.split('/')[1]}`, subnet.includes(':') ? 6 : 4);
    } catch (err) {
      throw new DomainError(`invalid address ${address}: ${(err as Error).message}`, 'invalid', { pool: subnet, address });
    }
    if (!contains(subnet, cidr.ip)) throw new DomainError(`address ${address} is not in pool ${subnet}`, 'invalid', { pool: subnet, address });
    return cidr.ip;
  }

  /** The first /24 of the default range that no pool uses yet. */
  private chooseDefaultPool(replica: Replica): string {
    const used = new Set<string>();
    for (const row of replica.rows('Address_Set')) {
      const pool = externalIds(row).get(Keys.pool);
      if (pool) used.add(pool);
    }
    const [start, end] = addressBounds(this.defaultPools);
    for (let net = start; net <= end; net += 256n) {
      const candidate = `${bigToIPv4(net)}/24`;
      if (!used.has(candidate) && !replica.findOne('Address_Set', 'name', poolName(candidate))) return candidate;
    }
    throw new DomainError(`no free /24 left in the default pool range ${this.defaultPools}; pass --subnet`, 'exhausted', { range: this.defaultPools });
  }
}

export function poolName(subnet: string): string {
  // Address_Set names allow [a-zA-Z_.0-9] only.
  return `docker_pool_${subnet.replace(/[/:]/g, '_')}`;
}

/**
 * Whether the pool user `token` (its value `user`) holds an address: its
 * own endpoint's (with its token), a warm port its network adopted, or one
 * recycled on its host (or whose port is gone). Never the gateway, an
 * --aux-address, or a warm port's.
 */
function heldByUser(replica: Replica, holder: string, token: string, user: string): boolean {
  if (holder.startsWith(`${token} `)) return true;
  const warm = parseWarmHolder(holder);
  const [chassis, network] = user.split(' ');
  if (warm?.state === 'adopted') return warm.networkId === network;
  if (warm?.state !== 'recycled') return false;
  const port = replica.findOne('Logical_Switch_Port', 'name', warm.port);
  return !port || externalIds(port).get(Keys.warm) === chassis;
}

/** Docker's holder of an endpoint's address: the pool user's token and a nonce, so that the user sees whether its value won. */
function endpointHolder(token: string): string {
  return `${token} ${randomBytes(4).toString('hex')}`;
}

function parsePoolId(poolId: string): { name: string; token: string } {
  const m = /^(docker_pool_[0-9a-fA-F._]+)\/([0-9a-f]{12})$/.exec(poolId);
  if (!m) throw new DomainError(`invalid PoolID "${poolId}"`, 'invalid', { poolId });
  return { name: m[1]!, token: m[2]! };
}

function firstHost(subnet: string): string {
  const start = addressBounds(subnet)[0] + 1n;
  return subnet.includes(':') ? bigToIPv6(start) : bigToIPv4(start);
}

