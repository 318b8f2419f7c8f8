/**
 * Keeps a few warm ports (ovn/warm-ports.ts) ready on this host for each
 * IPv4 switch that a local network uses: the logical port made, its veth
 * created and plugged into the bridge, and ovn-controller's flows
 * installed. On a network of our IPAM, RequestAddress hands out such a
 * port's address; on one of Docker's IPAM the port already has the address
 * Docker gives next. CreateEndpoint adopts the port, and Join has nothing
 * left to wait for. A container that ends soon gives its port back
 * (recycle()); otherwise the switch is refilled in the background, a while
 * after the hand-out.
 *
 * What is ready lives in memory, but only as a cache: the ports are in NB
 * (docker:warm=<chassis>) and OVS, and start() rebuilds the cache after a
 * restart, re-plugging or removing what a crash left half done.
 */
import type { Logger } from 'pino';
import { hostIfName } from '../host/names.js';
import { addressBounds, stripPrefix } from '../ovn/addressing.js';
import { isPortSet, portSetName } from '../ovn/port-sets.js';
import { macFromIPv4 } from '../ovn/mac.js';
import type { EndpointRecord, NetworkRecord } from '../ovn/networks.js';
import type { WarmSource } from '../ovn/pools.js';
import type { OvnWarmPorts, WarmPort } from '../ovn/warm-ports.js';
import type { HostPorts } from './host-ports.js';
import type { PortReadiness } from './port-readiness.js';

export interface WarmPoolSettings {
  /** OVS system-id of this host. */
  chassis: string;
  /** Ready ports to keep per switch; 0 turns warm ports off. */
  perSwitch: number;
  /** A warm port is made only while more than this many addresses of the pool stay free for endpoints. */
  reserveFree: number;
  /** How long a new warm port may take to be bound before it is given up. */
  readyTimeoutMs: number;
  /** Wait this long after a hand-out before refilling, so the refill does not compete with the container start. */
  refillDelayMs: number;
  /** Wait this long before trying again after a failed refill; doubled after each failure in a row. */
  retryDelayMs: number;
  /** The longest wait between retries. */
  maxRetryDelayMs: number;
}

export class WarmPool implements WarmSource {
  /** Ports whose host side is plugged and flows installed, not handed out yet. */
  private readonly ready = new Map<string, WarmPort>();
  /** Ports handed out from `ready`: plugged and bound, for Join to use as they are. */
  private readonly handedOut = new Set<string>();
  /** Ports DeleteEndpoint kept (recycle()), waiting for ReleaseAddress to make them warm again. */
  private readonly recycling = new Map<string, WarmPort>();
  private readonly refills = new Map<string, Promise<void>>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** Failed refills in a row, per pool: while OVN is down, retries slow down instead of churning ports. */
  private readonly failures = new Map<string, number>();
  /**
   * Per port set (Docker's IPAM): the lowest address Docker was seen to give
   * an endpoint, below which warm ports are not made (an --ip-range). Only a
   * hint: after a restart the first allocation sets it again.
   */
  private readonly floors = new Map<string, string>();
  /** Per port set: addresses of endpoints being created right now, which no warm port may take meanwhile. */
  private readonly endpointsInFlight = new Map<string, Map<string, number>>();
  /** Per port set: the warm port being created right now, and its address once chosen. */
  private readonly creating = new Map<string, { done: Promise<unknown>; ip?: string }>();
  private closed = false;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly ovn: OvnWarmPorts,
    private readonly host: HostPorts,
    private readonly readiness: PortReadiness,
    private readonly settings: WarmPoolSettings,
    private readonly log: Logger,
  ) {}

  get enabled(): boolean {
    return this.settings.perSwitch > 0;
  }

  /** Names of every port of this host's pools (warm, claimed, adopted, recycled): host reconcile keeps their veths. */
  portNames(): string[] {
    return this.ovn.list(this.settings.chassis).map((p) => p.name);
  }

  /**
   * After a (re)start: drop claimed ports no endpoint adopted (the address
   * stays Docker's; its CreateEndpoint, if it still comes, makes a port of
   * its own), give back addresses of vanished warm ports, take the warm
   * ones that survived back into service, and fill every pool.
   */
  async start(): Promise<void> {
    this.unsubscribe = this.ovn.onRemoved(this.settings.chassis, (name) => this.forgetRemoved(name));
    const mine = this.ovn.list(this.settings.chassis);
    // Claimed or recycled: a request the restart cut short. Adopted ones are endpoints, and stay.
    const stale = mine.filter((p) => p.state === 'claimed' || p.state === 'recycled' || (p.state === 'warm' && !this.enabled));
    await this.discard(stale);
    const released = await this.ovn.releaseOrphanedAddresses();
    this.log.info({ removed: stale.length, released }, 'warm ports: leftovers of the previous run cleaned');
    // The rest waits for ovn-controller: in the background, while the driver serves.
    void this.revive(mine.filter((p) => p.state === 'warm' && this.enabled));
  }

  private async revive(survivors: WarmPort[]): Promise<void> {
    // Side by side: one port that never comes up must not hold the others back.
    await Promise.all(
      survivors.map(async (port) => {
        try {
          await this.plugAndWait(port);
          // Taken over while it was being plugged (an endpoint got its address): its host side is garbage.
          if (!this.stillWarm(port)) throw new Error('taken over while it was being plugged');
          this.ready.set(port.name, port);
        } catch (err) {
          this.log.warn({ port: port.name, err: (err as Error).message }, 'cannot bring a warm port back into service; removing it');
          await this.discard([port]);
        }
      }),
    );
    this.log.info({ ready: this.ready.size }, 'warm ports recovered');
    this.fillAll();
  }

  /** Queue a refill of every switch this host may keep warm ports on. */
  fillAll(): void {
    for (const pool of this.ovn.eligiblePools(this.settings.chassis)) this.schedule(pool, 0);
  }

  /** WarmSource: hand a ready port's address in `pool` to `holder` (RequestAddress). */
  async claim(pool: string, holder: string): Promise<string | undefined> {
    if (!this.enabled) return undefined;
    for (;;) {
      const port = [...this.ready.values()].find((p) => p.pool === pool);
      if (!port) break;
      // Synchronous from the lookup to here: two concurrent requests never take the same port.
      this.ready.delete(port.name);
      if (await this.ovn.claim(port, holder)) {
        this.handedOut.add(port.name);
        this.schedule(pool, this.settings.refillDelayMs);
        this.log.debug({ port: port.name, ipv4: port.ipv4 }, 'warm port handed out');
        return stripPrefix(port.ipv4);
      }
      // Taken over by another request, or removed: its host side is garbage now.
      await this.discard([port]);
    }
    this.schedule(pool, 0);
    return undefined;
  }

  /**
   * The port CreateEndpoint may adopt for an endpoint of `network` with this
   * address: on our IPAM's network the port RequestAddress claimed it from;
   * on Docker's IPAM's, a ready warm port holding it, taken out of the ready
   * ones here (synchronously, so no two endpoints get it).
   */
  portFor(network: NetworkRecord, ipv4: string): WarmPort | undefined {
    const target = this.targetOf(network);
    if (!this.enabled || !target) return undefined;
    if (!isPortSet(target)) return this.ovn.findByAddress(this.settings.chassis, target, ipv4, ['claimed']);
    const ip = stripPrefix(ipv4);
    const port = [...this.ready.values()].find((p) => p.pool === target && stripPrefix(p.ipv4) === ip);
    if (port) this.ready.delete(port.name);
    return port;
  }

  /**
   * Before CreateEndpoint makes a port of its own on a network of Docker's
   * IPAM: from now on no warm port is made at its address, and one being
   * made right now at that address is in NB when this resolves
   * (CreateEndpoint then takes it over, networks.ts). Call the returned
   * function when the endpoint exists.
   */
  async beforeEndpoint(network: NetworkRecord, ipv4: string): Promise<() => void> {
    const target = this.targetOf(network);
    if (!this.enabled || !target || !isPortSet(target)) return () => undefined;
    const ip = stripPrefix(ipv4);
    const inFlight = this.endpointsInFlight.get(target) ?? new Map<string, number>();
    this.endpointsInFlight.set(target, inFlight);
    inFlight.set(ip, (inFlight.get(ip) ?? 0) + 1);
    // A creation not built yet sees the address in flight; one built at another address cannot pick it any more.
    const creating = this.creating.get(target);
    if (creating?.ip === ip) await creating.done.catch(() => undefined);
    return () => {
      const left = (inFlight.get(ip) ?? 1) - 1;
      if (left > 0) inFlight.set(ip, left);
      else inFlight.delete(ip);
      if (inFlight.size === 0 && this.endpointsInFlight.get(target) === inFlight) this.endpointsInFlight.delete(target);
    };
  }

  /** Make the port the endpoint's; Join then finds it ready (takeReady). */
  async adopt(port: WarmPort, networkId: string, endpointId: string): Promise<EndpointRecord> {
    const endpoint = await this.ovn.adopt(port, networkId, endpointId);
    if (isPortSet(port.pool)) {
      this.handedOut.add(port.name);
      this.schedule(port.pool, this.settings.refillDelayMs);
    }
    return endpoint;
  }

  /**
   * CreateEndpoint on a network of Docker's IPAM got `ipv4` from Docker
   * (`onWarmPort`: on a warm port). Keeps the floor of the addresses Docker
   * gives, and queues a refill. An address given past a ready warm port
   * means Docker skips that one (an --ip-range, or an address it keeps for
   * something else): the floor moves up to it. (So does a --ip past it; the
   * next address Docker gives below the floor brings it back down.)
   */
  noteAllocation(network: NetworkRecord, ipv4: string, onWarmPort: boolean): void {
    const target = this.targetOf(network);
    if (!this.enabled || !target || !isPortSet(target)) return;
    const ip = stripPrefix(ipv4);
    const floor = this.floors.get(target);
    const skipped = !onWarmPort && [...this.ready.values()].some((p) => p.pool === target && below(stripPrefix(p.ipv4), ip));
    if (skipped || (floor !== undefined && below(ip, floor))) this.floors.set(target, ip);
    this.schedule(target, this.settings.refillDelayMs);
  }

  /**
   * For Join: true when this port's host side was plugged by the pool and
   * ovn-controller still reports its flows installed, so Join can answer at
   * once. Otherwise Join plugs (idempotently) and waits as for any port.
   */
  takeReady(portName: string): boolean {
    if (!this.handedOut.delete(portName)) return false;
    return this.readiness.installed(hostIfName(portName));
  }

  /**
   * Whether an endpoint's port may serve another container after this one
   * (recycle()): a port of this host with only an IPv4 address of a pool this
   * host keeps warm ports on, and the MAC derived from it, as a warm port has.
   */
  recyclable(endpoint: EndpointRecord, network: NetworkRecord): boolean {
    const pool = this.targetOf(network);
    const ip = endpoint.ipv4 === undefined ? undefined : stripPrefix(endpoint.ipv4);
    return (
      this.enabled &&
      pool !== undefined &&
      ip !== undefined &&
      endpoint.ipv6 === undefined &&
      endpoint.chassis === this.settings.chassis &&
      endpoint.mac === macFromIPv4(ip)
    );
  }

  /**
   * DeleteEndpoint: keep the endpoint's port and veth for the next container
   * instead of deleting them, when the pool is short of warm ports and the
   * engine has moved the veth back out of the container intact. Saves the
   * deletion now and a creation later: OVS, ovn-controller and ovn-northd see
   * no change to the port at all. False when the caller must tear it down.
   */
  async recycle(endpoint: EndpointRecord, network: NetworkRecord): Promise<boolean> {
    const pool = this.targetOf(network);
    // Docker's IPAM gives the address it gets back first: a port set keeps the port even when it has enough (see trim()).
    const full = pool !== undefined && !isPortSet(pool) && this.count(pool) >= this.settings.perSwitch;
    if (!pool || full || !this.recyclable(endpoint, network)) return false;
    if (!(await this.host.isReusable(endpoint.name, network.mtu, endpoint.mac))) return false;
    const port = await this.ovn.recycle(endpoint.endpointId, this.settings.chassis, pool);
    if (!port) return false;
    // A port set's port is warm at once (Docker's IPAM releases the address itself); a pool's waits for ReleaseAddress.
    if (port.state === 'warm') {
      this.ready.set(port.name, port);
      this.trim(pool);
    } else {
      this.recycling.set(port.name, port);
    }
    this.log.debug({ port: port.name, endpointId: endpoint.endpointId }, 'endpoint deleted; its port is kept for the next container');
    return true;
  }

  /**
   * Docker released an address. A port recycle() kept with it becomes warm
   * again, and true says the address stays held. A claimed port no endpoint
   * adopted (a failed container start) goes.
   */
  async releaseClaimed(pool: string, ip: string): Promise<boolean> {
    const port = this.ovn.findByAddress(this.settings.chassis, pool, ip, ['claimed', 'recycled']);
    if (!port) return false;
    if (this.recycling.delete(port.name) && port.state === 'recycled') {
      if (await this.ovn.rewarm(port)) {
        this.ready.set(port.name, { ...port, state: 'warm' });
        return true;
      }
    }
    await this.discard([port]);
    return false;
  }

  /**
   * A port set with more ready ports than it keeps: the ones at the highest
   * addresses go (in the background), since Docker's IPAM gives the lowest
   * free address first.
   */
  private trim(pool: string): void {
    const ports = [...this.ready.values()].filter((p) => p.pool === pool);
    const extra = ports.length - this.settings.perSwitch;
    if (extra <= 0) return;
    const highest = ports.sort((a, b) => (below(stripPrefix(a.ipv4), stripPrefix(b.ipv4)) ? 1 : -1)).slice(0, extra);
    // discard() takes them out of `ready` before its first await: no one is handed them meanwhile.
    void this.discard(highest);
  }

  /** Whether NB still has the port as warm: not taken over, claimed, adopted or removed since this host last looked. */
  private stillWarm(port: WarmPort): boolean {
    return this.ovn.find(port.name)?.state === 'warm';
  }

  /** The Address_Set recording the warm ports of a network's switch on this host, if it may have any. */
  targetOf(network: NetworkRecord): string | undefined {
    const target = network.pools?.v4 ?? portSetName(network.name);
    return this.ovn.isEligible(target, this.settings.chassis) ? target : undefined;
  }

  /** This host's last network left the pool's switch: remove its warm ports there. */
  async dropPool(pool: string): Promise<void> {
    clearTimeout(this.timers.get(pool));
    this.timers.delete(pool);
    this.floors.delete(pool);
    await this.refills.get(pool);
    // Docker deletes no network with endpoints: an adopted port left is one whose DeleteEndpoint failed. It goes
    // from NB with the switch; its veth goes here (remove() keeps adopted ports in NB). Ports gone from NB
    // already (taken over) may still be known here, with a veth.
    const byName = new Map(this.ovn.list(this.settings.chassis, pool).map((p) => [p.name, p]));
    for (const p of [...this.ready.values(), ...this.recycling.values()]) if (p.pool === pool && !byName.has(p.name)) byName.set(p.name, p);
    const ports = [...byName.values()];
    await this.discard(ports);
    if (ports.length) this.log.info({ pool, ports: ports.length }, 'warm ports removed with the last local network of their switch');
  }

  /** Remove ports from NB and their host side; errors are logged, and reconcile catches what is left. */
  async discard(ports: WarmPort[]): Promise<void> {
    if (ports.length === 0) return;
    for (const port of ports) {
      this.ready.delete(port.name);
      this.handedOut.delete(port.name);
      this.recycling.delete(port.name);
    }
    await this.ovn.remove(ports).catch((err: unknown) =>
      this.log.warn({ err: (err as Error).message, ports: ports.map((p) => p.name) }, 'cannot remove warm ports from OVN'),
    );
    for (const port of ports) {
      await this.host.unplug(port.name).catch((err: unknown) =>
        this.log.warn({ port: port.name, err: (err as Error).message }, 'cannot remove the veth of a warm port; reconcile will'),
      );
    }
  }

  /** A ready port vanished from NB (taken over by another host): its veth is garbage, and the pool one short. */
  private forgetRemoved(name: string): void {
    const port = this.ready.get(name);
    if (!port) return;
    this.ready.delete(name);
    this.log.debug({ port: name, pool: port.pool }, 'a warm port was taken over; removing its veth');
    void this.host
      .unplug(name)
      .catch((err: unknown) => this.log.warn({ port: name, err: (err as Error).message }, 'cannot remove the veth of a warm port; reconcile will'));
    this.schedule(port.pool, this.settings.refillDelayMs);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribe?.();
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    await Promise.allSettled(this.refills.values());
  }

  private schedule(pool: string, delayMs: number): void {
    if (this.closed || !this.enabled || this.timers.has(pool)) return;
    const timer = setTimeout(() => {
      this.timers.delete(pool);
      this.refill(pool);
    }, delayMs);
    timer.unref();
    this.timers.set(pool, timer);
  }

  /** One refill per pool at a time; a refill asked for while one runs runs after it. */
  private refill(pool: string): void {
    const previous = this.refills.get(pool) ?? Promise.resolve();
    const next = previous.then(() => this.fill(pool));
    this.refills.set(pool, next);
    void next.finally(() => {
      if (this.refills.get(pool) === next) this.refills.delete(pool);
    });
  }

  private async fill(pool: string): Promise<void> {
    const started = Date.now();
    let made = 0;
    try {
      while (!this.closed) {
        // Ports another host's request took over are gone from NB: drop their host side.
        // So are ports of a port set away from the lowest addresses Docker gives next (a floor moved, an address came free).
        const floor = this.floors.get(pool);
        const preferred = isPortSet(pool) ? this.ovn.preferredAddresses(pool, this.settings.chassis, this.settings.perSwitch, floor) : undefined;
        const vanished = [...this.ready.values()].filter(
          (p) => p.pool === pool && (!this.stillWarm(p) || (preferred !== undefined && !preferred.has(stripPrefix(p.ipv4)))),
        );
        await this.discard(vanished);
        if (this.count(pool) >= this.settings.perSwitch || !this.ovn.isEligible(pool, this.settings.chassis)) break;
        const creating: { done: Promise<unknown>; ip?: string } = { done: Promise.resolve() };
        const creation = this.ovn.create(pool, this.settings.chassis, this.settings.reserveFree, {
          ...(floor ? { floor } : {}),
          avoid: () => this.endpointsInFlight.get(pool)?.keys() ?? [],
          onChosen: (ip) => (creating.ip = ip),
        });
        creating.done = creation;
        this.creating.set(pool, creating);
        const port = await creation.finally(() => this.creating.delete(pool));
        if (!port) break;
        try {
          await this.plugAndWait(port);
        } catch (err) {
          await this.discard([port]);
          throw err;
        }
        if (this.closed) break;
        // Taken over while it was being plugged (an endpoint got its address): its host side is garbage.
        if (!this.stillWarm(port)) {
          await this.discard([port]);
          continue;
        }
        this.ready.set(port.name, port);
        made++;
      }
      if (made) this.log.debug({ pool, made, ms: Date.now() - started }, 'warm ports ready');
      if (this.failures.delete(pool)) this.log.info({ pool }, 'warm ports can be made again');
    } catch (err) {
      const failures = (this.failures.get(pool) ?? 0) + 1;
      this.failures.set(pool, failures);
      const retryInMs = Math.min(this.settings.retryDelayMs * 2 ** (failures - 1), this.settings.maxRetryDelayMs);
      this.log.warn(
        { pool, err: (err as Error).message, failures, retryInMs },
        'cannot make a warm port; containers on this network start without one (and wait for OVN in Join) until a retry succeeds. ' +
          'Check that ovn-controller runs and reaches the southbound database.',
      );
      const timer = setTimeout(() => {
        this.timers.delete(pool);
        this.refill(pool);
      }, retryInMs);
      timer.unref();
      if (!this.closed && !this.timers.has(pool)) this.timers.set(pool, timer);
      else clearTimeout(timer);
    }
  }

  /** Ports of the pool that are ready, or will be once Docker releases their address. */
  private count(pool: string): number {
    const inPool = (ports: Iterable<WarmPort>) => [...ports].filter((p) => p.pool === pool).length;
    return inPool(this.ready.values()) + inPool(this.recycling.values());
  }

  private async plugAndWait(port: WarmPort): Promise<void> {
    await this.host.plug({ portName: port.name, mac: port.mac, mtu: port.mtu });
    await this.readiness.wait(port.name, hostIfName(port.name), this.settings.readyTimeoutMs);
  }
}

/** Whether IPv4 address `a` comes before `b`. */
function below(a: string, b: string): boolean {
  return addressBounds(`${a}/32`)[0] < addressBounds(`${b}/32`)[0];
}
