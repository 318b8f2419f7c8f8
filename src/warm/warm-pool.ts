import type { Logger } from 'pino';
import type { HostPorts, PlugRequest } from '../host/host-ports.js';
import { hostIfName } from '../host/names.js';
import type { PortReadiness } from '../ovn/port-readiness.js';
import { ipv4Value, stripPrefix } from '../net/addressing.js';
import { macFromIPv4 } from '../net/mac.js';
import { isPortSet, portSetName } from '../ovn/port-sets.js';
import type { EndpointRecord, EndpointSpec, NetworkRecord } from '../ovn/records.js';
import type { OvnWarmPorts, WarmPort } from '../ovn/warm-ports.js';
import { AddressPredictor, below } from './address-predictor.js';
import type { WarmPorts } from './warm-ports.js';
import { Inventory } from './inventory.js';
import { PoolSizer } from './pool-sizer.js';
import { RefillScheduler, type RefillTiming } from './refill-scheduler.js';
import { StartsInFlight, type SettleTiming } from './starts-in-flight.js';

const plugRequest = (port: WarmPort): PlugRequest => ({ portName: port.name, mac: port.mac, mtu: port.mtu, ...(port.tag !== undefined ? { tag: port.tag } : {}) });

export interface WarmPoolSettings extends RefillTiming, SettleTiming {
  /** OVS system-id of this host. */
  chassis: string;
  /** Ready ports to keep per switch while idle; 0 turns warm ports off. */
  perSwitch: number;
  /** The most ready ports a switch's pool grows to for bursts of container starts. */
  maxPerSwitch: number;
  /** After this long without a container start on a switch, its pool shrinks by half, back to `perSwitch`. */
  idleShrinkMs: number;
  /** A warm port is made only while more than this many addresses of the pool stay free for endpoints. */
  reserveFree: number;
  /** How long a new warm port may take to be bound before it is given up. */
  readyTimeoutMs: number;
  /** Wait this long after a hand-out before refilling, so the refill does not compete with the container start. */
  refillDelayMs: number;
}

/**
 * Keeps warm ports ready on this host for each IPv4 switch a local network
 * uses: the logical port made (ovn/warm-ports.ts holds its rows), its veth
 * plugged into the bridge, and ovn-controller's flows installed. How many
 * follows the container starts (pool-sizer.ts): a few while idle, more
 * after a burst that emptied the pool.
 * Each switch's ports are keyed by the Address_Set holding their addresses:
 * the pool of our IPAM, or the switch's port set for Docker's IPAM.
 *
 * What is ready lives in memory only as a cache (inventory.ts): the ports
 * are in NB (docker:warm=<chassis>) and OVS, and start() rebuilds the cache
 * after a restart, re-plugging or removing what a crash left half done.
 */
export class WarmPool implements WarmPorts {
  private readonly inventory = new Inventory();
  private readonly predictor = new AddressPredictor();
  private readonly sizer: PoolSizer;
  private readonly refills: RefillScheduler;
  private readonly starts: StartsInFlight;
  private closed = false;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly ovn: OvnWarmPorts,
    private readonly host: HostPorts,
    private readonly readiness: PortReadiness,
    private readonly settings: WarmPoolSettings,
    private readonly log: Logger,
  ) {
    this.refills = new RefillScheduler((pool) => this.fill(pool), settings, log);
    this.starts = new StartsInFlight((names) => host.containerEndsHere(names), settings);
    this.sizer = new PoolSizer({ min: settings.perSwitch, max: settings.maxPerSwitch, idleMs: settings.idleShrinkMs }, (pool, size) => {
      this.log.info({ pool, size }, 'no container started on this network for a while: its warm pool shrinks');
      this.trim(pool);
    });
  }

  private get enabled(): boolean {
    return this.settings.perSwitch > 0;
  }

  portNames(): string[] {
    return this.ovn.list(this.settings.chassis).map((p) => p.name);
  }

  /**
   * Claimed or recycled ports are requests the restart cut short: they go
   * (the address stays Docker's; its CreateEndpoint, if it still comes, makes
   * a port of its own), as do addresses of vanished warm ports. Adopted ones
   * are endpoints, and stay. Warm ones go back into service.
   */
  async start(): Promise<void> {
    this.unsubscribe = this.ovn.onRemoved(this.settings.chassis, (name) => this.forgetRemoved(name));
    const mine = this.ovn.list(this.settings.chassis);
    const stale = mine.filter((p) => p.state === 'claimed' || p.state === 'recycled' || (p.state === 'warm' && !this.enabled));
    await this.discard(stale);
    const released = await this.ovn.releaseOrphanedAddresses();
    this.log.info({ removed: stale.length, released }, 'warm ports: leftovers of the previous run cleaned');
    // The rest waits for ovn-controller: in the background, while the driver serves.
    void this.revive(mine.filter((p) => p.state === 'warm' && this.enabled));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribe?.();
    this.sizer.close();
    this.starts.close();
    await this.refills.close();
  }

  networkCreated(): void {
    this.fillAll();
  }

  async lastNetworkLeaving(network: NetworkRecord): Promise<void> {
    const pool = this.targetOf(network);
    if (!pool) return;
    this.predictor.forget(pool);
    this.sizer.forget(pool);
    await this.refills.cancel(pool);
    // Docker deletes no network with endpoints: an adopted port left is one whose DeleteEndpoint failed. It goes
    // from NB with the switch; its veth goes here (remove() keeps adopted ports in NB). Ports gone from NB
    // already (taken over) may still be known here, with a veth.
    const byName = new Map(this.ovn.list(this.settings.chassis, pool).map((p) => [p.name, p]));
    for (const p of this.inventory.known(pool)) if (!byName.has(p.name)) byName.set(p.name, p);
    const ports = [...byName.values()];
    await this.discard(ports);
    if (ports.length) this.log.info({ pool, ports: ports.length }, 'warm ports removed with the last local network of their switch');
  }

  async endpointPort(
    network: NetworkRecord,
    spec: EndpointSpec,
    makeOwn: () => Promise<EndpointRecord>,
  ): Promise<{ endpoint: EndpointRecord; warm: boolean }> {
    const target = this.targetOf(network);
    if (!target || !spec.ipv4) return { endpoint: await makeOwn(), warm: false };
    const adopted = spec.ipv6 ? undefined : await this.adopt(target, spec, spec.ipv4);
    const endpoint = adopted ?? (await this.withAddressHeld(target, spec.ipv4, makeOwn));
    if (isPortSet(target)) {
      const ready = this.inventory.readyIn(target);
      this.predictor.noteAllocation(target, spec.ipv4, adopted !== undefined, ready.map((p) => p.ipv4));
      this.sizer.started(target, adopted === undefined && this.pastThePool(spec.ipv4, ready));
      this.afterHandOut(target);
    }
    return { endpoint, warm: adopted !== undefined };
  }

  /**
   * Whether Docker's IPAM gave `ipv4` because the pool had too few ports: it
   * gives the lowest free address, so a start the pool missed gets one just
   * past every ready port (starts side by side take the lower ones). An
   * address further away than the pool could ever grow is a --ip or the start
   * of an --ip-range, which a larger pool would not have served either.
   */
  private pastThePool(ipv4: string, ready: WarmPort[]): boolean {
    const ip = ipv4Value(ipv4);
    const highest = ready.map((p) => ipv4Value(p.ipv4)).reduce((h, v) => (v > h ? v : h), -1n);
    if (highest < 0n) return true;
    return ip > highest && ip - highest <= BigInt(this.sizer.bound);
  }

  takeReady(portName: string): boolean {
    const pool = this.inventory.takeHandedOut(portName);
    if (pool === undefined || !this.readiness.isReady(portName, hostIfName(portName))) return false;
    this.starts.joined(pool, portName);
    return true;
  }

  /**
   * A port of this host with only an IPv4 address of a switch this host
   * keeps warm ports on, and the MAC derived from it, as a warm port has.
   */
  mayRecycle(endpoint: EndpointRecord, network: NetworkRecord): boolean {
    const ip = endpoint.ipv4 === undefined ? undefined : stripPrefix(endpoint.ipv4);
    return (
      this.targetOf(network) !== undefined &&
      ip !== undefined &&
      endpoint.ipv6 === undefined &&
      endpoint.chassis === this.settings.chassis &&
      endpoint.mac === macFromIPv4(ip)
    );
  }

  /**
   * Kept when the pool is short of warm ports and the engine has moved the
   * veth back out of the container intact. Saves the deletion now and a
   * creation later: OVS, ovn-controller and ovn-northd see no change to the
   * port at all.
   */
  async recycle(endpoint: EndpointRecord, network: NetworkRecord): Promise<boolean> {
    const pool = this.targetOf(network);
    // Docker's IPAM gives the address it gets back first: a port set keeps the port even when it has enough (see trim()).
    const full = pool !== undefined && !isPortSet(pool) && this.inventory.count(pool) >= this.sizer.size(pool);
    this.starts.ended(endpoint.name);
    if (!pool || full || !this.mayRecycle(endpoint, network)) return false;
    try {
      if (!(await this.host.isReusable(endpoint.name, network.mtu, endpoint.mac))) return false;
      const port = await this.ovn.recycle(endpoint.endpointId, this.settings.chassis, pool);
      if (!port) return false;
      // A port set's port is warm at once (Docker's IPAM releases the address itself); a pool's waits for ReleaseAddress.
      if (port.state === 'warm') {
        this.inventory.addReady(port);
        this.trim(pool);
      } else {
        this.inventory.addRecycling(port);
      }
      this.log.debug({ port: port.name, endpointId: endpoint.endpointId }, 'endpoint deleted; its port is kept for the next container');
      return true;
    } catch (err) {
      this.log.warn({ endpointId: endpoint.endpointId, port: endpoint.name, err: (err as Error).message }, 'cannot keep the port for the next container; removing it');
      return false;
    }
  }

  async claim(pool: string, holder: string): Promise<string | undefined> {
    if (!this.enabled) return undefined;
    for (;;) {
      // Synchronous from the lookup to the removal: two concurrent requests never take the same port.
      const port = this.inventory.take(pool);
      if (!port) break;
      if (await this.ovn.claim(port, holder)) {
        this.inventory.markHandedOut(port);
        this.sizer.started(pool, false);
        this.afterHandOut(pool);
        this.log.debug({ port: port.name, ipv4: port.ipv4 }, 'warm port handed out');
        return stripPrefix(port.ipv4);
      }
      // Taken over by another request, or removed: its host side is garbage now.
      await this.discard([port]);
    }
    this.sizer.started(pool, true);
    this.schedule(pool, 0);
    return undefined;
  }

  /** A port recycle() kept becomes warm again; a claimed port no endpoint adopted (a failed container start) goes. */
  async released(pool: string, ip: string): Promise<boolean> {
    const port = this.ovn.findByAddress(this.settings.chassis, pool, ip, ['claimed', 'recycled']);
    if (!port) return false;
    if (this.inventory.takeRecycling(port.name) && port.state === 'recycled' && (await this.ovn.rewarm(port))) {
      this.inventory.addReady({ ...port, state: 'warm' });
      return true;
    }
    await this.discard([port]);
    return false;
  }

  /**
   * The warm port an endpoint with this address takes: on our IPAM the one
   * RequestAddress claimed it from; on Docker's a ready one at the address.
   * One whose MAC is not the one Docker asks for goes instead, as does one
   * taken over or removed meanwhile: then the endpoint gets its own port.
   */
  private async adopt(target: string, spec: EndpointSpec, ipv4: string): Promise<EndpointRecord | undefined> {
    const port = isPortSet(target)
      ? this.inventory.take(target, stripPrefix(ipv4))
      : this.ovn.findByAddress(this.settings.chassis, target, ipv4, ['claimed']);
    if (!port) return undefined;
    if (spec.mac && spec.mac !== port.mac) {
      await this.discard([port]);
      return undefined;
    }
    try {
      const endpoint = await this.ovn.adopt(port, spec.networkId, spec.endpointId);
      if (isPortSet(port.pool)) this.inventory.markHandedOut(port);
      return endpoint;
    } catch (err) {
      this.log.warn({ endpointId: spec.endpointId, port: port.name, err: (err as Error).message }, 'cannot adopt a warm port; making a port for the endpoint');
      await this.discard([port]);
      return undefined;
    }
  }

  /** On Docker's IPAM, no warm port is made at the endpoint's address while it gets its own port. */
  private async withAddressHeld(target: string, ipv4: string, makeOwn: () => Promise<EndpointRecord>): Promise<EndpointRecord> {
    const release = isPortSet(target) ? await this.predictor.hold(target, ipv4) : undefined;
    try {
      return await makeOwn();
    } finally {
      release?.();
    }
  }

  private async revive(survivors: WarmPort[]): Promise<void> {
    // Side by side: one port that never comes up must not hold the others back.
    await Promise.all(
      survivors.map(async (port) => {
        try {
          await this.plugAndWait(port);
          // Taken over while it was being plugged (an endpoint got its address): its host side is garbage.
          if (!this.stillWarm(port)) throw new Error('taken over while it was being plugged');
          this.inventory.addReady(port);
        } catch (err) {
          this.log.warn({ port: port.name, err: (err as Error).message }, 'cannot bring a warm port back into service; removing it');
          await this.discard([port]);
        }
      }),
    );
    // A pool grown for bursts before the restart keeps its size until it is idle.
    for (const pool of new Set(survivors.map((p) => p.pool))) this.sizer.resume(pool, this.inventory.readyIn(pool).length);
    this.log.info({ ready: this.inventory.readyCount }, 'warm ports recovered');
    this.fillAll();
  }

  /** Queue a refill of every switch this host may keep warm ports on. */
  private fillAll(): void {
    for (const pool of this.ovn.eligiblePools(this.settings.chassis)) this.schedule(pool, 0);
  }

  /**
   * A pool with more ready ports than its size: the ones at the highest
   * addresses go (in the background), since Docker's IPAM gives the lowest
   * free address first, as does ours.
   */
  private trim(pool: string): void {
    const ports = this.inventory.readyIn(pool);
    const extra = ports.length - this.sizer.size(pool);
    if (extra <= 0) return;
    const highest = ports.sort((a, b) => (below(stripPrefix(a.ipv4), stripPrefix(b.ipv4)) ? 1 : -1)).slice(0, extra);
    // discard() takes them out of the inventory before its first await: no one is handed them meanwhile.
    void this.discard(highest);
  }

  /** Whether NB still has the port as warm: not taken over, claimed, adopted or removed since this host last looked. */
  private stillWarm(port: WarmPort): boolean {
    return this.ovn.find(port.name)?.state === 'warm';
  }

  /** The Address_Set recording the warm ports of a network's switch on this host, if it may have any. */
  private targetOf(network: NetworkRecord): string | undefined {
    if (!this.enabled) return undefined;
    const target = network.pools?.v4 ?? portSetName(network.name);
    return this.ovn.isEligible(target, this.settings.chassis) ? target : undefined;
  }

  /** Remove ports from NB and their host side; errors are logged, and reconcile catches what is left. */
  private async discard(ports: WarmPort[]): Promise<void> {
    if (ports.length === 0) return;
    for (const port of ports) {
      this.inventory.forget(port.name);
      this.starts.ended(port.name);
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
    const port = this.inventory.takeByName(name);
    if (!port) return;
    this.log.debug({ port: name, pool: port.pool }, 'a warm port was taken over; removing its veth');
    void this.host
      .unplug(name)
      .catch((err: unknown) => this.log.warn({ port: name, err: (err as Error).message }, 'cannot remove the veth of a warm port; reconcile will'));
    this.schedule(port.pool, this.settings.refillDelayMs);
  }

  private schedule(pool: string, delayMs: number, postpone = false): void {
    if (this.enabled) this.refills.schedule(pool, delayMs, postpone);
  }

  /**
   * Refill after a pause in the starts while the pool still has ready ports
   * (in a burst, a refill's NB transaction, ovn-northd recompute and veths
   * would compete with the starts it cannot help); once it is empty, within
   * the refill delay of the first start it missed.
   */
  private afterHandOut(pool: string): void {
    this.schedule(pool, this.settings.refillDelayMs, this.inventory.readyIn(pool).length > 0);
  }

  /**
   * Once the container starts in flight on the pool have finished
   * (starts-in-flight.ts), make ports until the pool has its size, as many
   * at once as it lacks (one NB transaction, plugged side by side); a
   * failure throws, and the scheduler retries later.
   */
  private async fill(pool: string): Promise<void> {
    const settling = Date.now();
    const starts = await this.starts.settle(pool);
    if (starts) this.log.debug({ pool, starts, ms: Date.now() - settling }, 'refill waited for the container starts in flight');
    const started = Date.now();
    let made = 0;
    while (!this.closed) {
      const size = this.sizer.size(pool);
      // Ports another host's request took over are gone from NB: drop their host side.
      // So are ports of a port set away from the lowest addresses Docker gives next (a floor moved, an address came free).
      const preferred = isPortSet(pool)
        ? this.ovn.preferredAddresses(pool, this.settings.chassis, size, this.predictor.floor(pool))
        : undefined;
      const vanished = this.inventory.readyIn(pool).filter((p) => !this.stillWarm(p) || (preferred !== undefined && !preferred.has(stripPrefix(p.ipv4))));
      await this.discard(vanished);
      const lacking = size - this.inventory.count(pool);
      if (lacking <= 0 || !this.ovn.isEligible(pool, this.settings.chassis)) break;
      const ports = await this.predictor.create(pool, (hint) => this.ovn.create(pool, this.settings.chassis, lacking, this.settings.reserveFree, hint));
      if (ports.length === 0) break;
      const { ready, error } = await this.plugAll(ports);
      made += ready;
      if (error) throw error;
    }
    if (made) this.log.debug({ pool, made, ms: Date.now() - started }, 'warm ports ready');
  }

  /**
   * Plug ports, all in one go (a few processes for the lot: a refill must
   * not crowd out container starts), and wait for their flows; each is ready
   * for hand-out as soon as it is. If the batch fails, each port is plugged
   * on its own, so that one bad port costs only itself. One that fails, or
   * was taken over meanwhile (an endpoint got its address), goes. Returns how
   * many became ready, and the first failure.
   */
  private async plugAll(ports: WarmPort[]): Promise<{ ready: number; error?: Error }> {
    const plugged = await this.host.plugMany(ports.map(plugRequest)).then(
      () => true,
      (err: unknown) => {
        this.log.debug({ ports: ports.length, err: (err as Error).message }, 'plugging warm ports together failed; plugging them one by one');
        return false;
      },
    );
    let ready = 0;
    let error: Error | undefined;
    await Promise.all(
      ports.map(async (port) => {
        try {
          await (plugged ? this.waitReady(port) : this.plugAndWait(port));
        } catch (err) {
          // One taken over meanwhile (an endpoint got its address; in a burst, Docker's IPAM gives the next ones) is no failure.
          if (this.stillWarm(port)) error ??= err as Error;
          await this.discard([port]);
          return;
        }
        if (this.closed || !this.stillWarm(port)) {
          await this.discard([port]);
          return;
        }
        this.inventory.addReady(port);
        ready++;
      }),
    );
    return { ready, ...(error ? { error } : {}) };
  }

  private async plugAndWait(port: WarmPort): Promise<void> {
    await this.host.plug(plugRequest(port));
    await this.waitReady(port);
  }

  private async waitReady(port: WarmPort): Promise<void> {
    await this.readiness.wait(port.name, hostIfName(port.name), this.settings.readyTimeoutMs);
  }
}
