/**
 * libnetwork's remote IpamDriver on OVN: pools and addresses live in the
 * Northbound database (pools.ts), so that every host of the deployment
 * allocates from the same pools and no two containers get one address.
 *
 *   docker network create -d openvswitch --ipam-driver openvswitch --subnet 10.1.0.0/24 foo
 */
import type { Logger } from 'pino';
import { ADDRESS_SPACE, type OvnPools } from '../ovn/pools.js';
import type {
  ReleaseAddressRequest,
  ReleasePoolRequest,
  RequestAddressRequest,
  RequestPoolRequest,
} from '../protocol/ipam-driver.js';
import { DriverError, toDriverError } from './errors.js';
import type { WarmPorts } from '../warm/index.js';

const GATEWAY_REQUEST = 'com.docker.network.gateway';
/** Engines 29+ name the container an address is for; --aux-address requests carry no options. */
const ENDPOINT_NAME = 'com.docker.network.endpoint.name';
/**
 * Only swarm's allocator, on a manager, asks for addresses with this option. It hands
 * each task an address that the task's node then asks this IPAM for again, which a
 * shared pool must refuse as taken (docs/swarm.md#who-gives-out-the-addresses).
 */
const SWARM_ALLOCATOR = 'com.docker.network.ipam.serial';

export class IpamDriver {
  constructor(
    private readonly pools: OvnPools,
    private readonly chassis: string,
    private readonly log: Logger,
    /** Addresses of ports already plugged on this host, handed out first. */
    private readonly warm: WarmPorts,
  ) {}

  getCapabilities() {
    return { RequiresMACAddress: false, RequiresRequestReplay: false };
  }

  getDefaultAddressSpaces() {
    return { LocalDefaultAddressSpace: ADDRESS_SPACE, GlobalDefaultAddressSpace: ADDRESS_SPACE };
  }

  async requestPool(req: RequestPoolRequest): Promise<object> {
    if (req.AddressSpace && req.AddressSpace !== ADDRESS_SPACE) {
      throw new DriverError(`unknown address space "${req.AddressSpace}" (this IPAM has only "${ADDRESS_SPACE}")`, 400);
    }
    const lease = await this.run(() =>
      this.pools.requestPool({ pool: req.Pool ?? '', subPool: req.SubPool ?? '', v6: req.V6 === true, chassis: this.chassis }),
    );
    this.log.info({ pool: lease.pool, poolId: lease.poolId }, 'pool requested');
    return { PoolID: lease.poolId, Pool: lease.pool, Data: {} };
  }

  async releasePool(req: ReleasePoolRequest): Promise<object> {
    await this.run(() => this.pools.releasePool(req.PoolID));
    this.log.info({ poolId: req.PoolID }, 'pool released');
    return {};
  }

  async requestAddress(req: RequestAddressRequest): Promise<object> {
    if (req.Options?.[SWARM_ALLOCATOR] !== undefined) {
      throw new DriverError(
        'this IPAM does not serve swarm networks: create the network without --ipam-driver, and swarm gives out ' +
          'the addresses of its --subnet itself, unique across the cluster (docs/swarm.md)',
        400,
      );
    }
    const kind = req.Options?.RequestAddressType === GATEWAY_REQUEST ? 'gateway' : req.Options?.[ENDPOINT_NAME] ? 'container' : 'endpoint';
    const address = await this.run(async () =>
      kind !== 'gateway' && !req.Address
        ? ((await this.warmAddress(req.PoolID)) ?? (await this.pools.requestAddress(req.PoolID, '', kind)))
        : this.pools.requestAddress(req.PoolID, req.Address ?? '', kind),
    );
    this.log.debug({ poolId: req.PoolID, address, kind }, 'address reserved');
    return { Address: address, Data: {} };
  }

  async releaseAddress(req: ReleaseAddressRequest): Promise<object> {
    // The PoolID must name our pool and hold the address: a forged or stale one is refused or changes nothing.
    const held = await this.run(async () => this.pools.releasable(req.PoolID, req.Address));
    if (!held) {
      this.log.debug({ poolId: req.PoolID, address: req.Address }, 'ReleaseAddress: not held by this pool user, or its endpoint still has a port; nothing freed');
      return {};
    }
    // A port DeleteEndpoint kept for the next container keeps the address, as a warm port.
    // Any other port still holding it (a failed container start) goes first: a free address must have no port.
    const kept = await this.run(() => this.warm.released(held.pool, held.ip));
    if (!kept) await this.run(() => this.pools.releaseAddress(req.PoolID, req.Address));
    return {};
  }

  /** A ready warm port's address, taken before any other: its container starts without waiting for OVN. */
  private async warmAddress(poolId: string): Promise<string | undefined> {
    const { pool, holder, prefix } = this.pools.warmRequest(poolId);
    const ip = await this.warm.claim(pool, holder);
    return ip && `${ip}/${prefix}`;
  }

  private async run<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      throw toDriverError(err, (message) => `OVN Northbound database: ${message}`);
    }
  }
}
