import { stripPrefix } from '../net/addressing.js';
import type { WarmPort } from '../ovn/warm-ports.js';

/**
 * What this host knows in memory about its warm ports, as a cache of NB and
 * OVS (the pool rebuilds it after a restart): which are ready, which were
 * handed to an endpoint and not joined yet, and which DeleteEndpoint kept.
 * Every method is synchronous, so that two callers never take one port.
 */
export class Inventory {
  /** Plugged, flows installed, not handed out yet. */
  private readonly ready = new Map<string, WarmPort>();
  /** Handed out from `ready`: plugged and bound, for Join to use as they are; name → pool. */
  private readonly handedOut = new Map<string, string>();
  /** Kept by DeleteEndpoint on a pool of our IPAM, waiting for ReleaseAddress to make them warm again. */
  private readonly recycling = new Map<string, WarmPort>();

  get readyCount(): number {
    return this.ready.size;
  }

  addReady(port: WarmPort): void {
    this.ready.set(port.name, port);
  }

  readyIn(pool: string): WarmPort[] {
    return [...this.ready.values()].filter((p) => p.pool === pool);
  }

  isReady(name: string): boolean {
    return this.ready.has(name);
  }

  /** Take a ready port of the pool out of the ready ones: the first, or the one at `ip`. */
  take(pool: string, ip?: string): WarmPort | undefined {
    const port = this.readyIn(pool).find((p) => ip === undefined || stripPrefix(p.ipv4) === ip);
    if (port) this.ready.delete(port.name);
    return port;
  }

  /** A ready port vanished (taken over elsewhere): out of the ready ones, returned if it was one. */
  takeByName(name: string): WarmPort | undefined {
    const port = this.ready.get(name);
    this.ready.delete(name);
    return port;
  }

  markHandedOut(port: WarmPort): void {
    this.handedOut.set(port.name, port.pool);
  }

  /** The pool of a port handed out and not joined since, once. */
  takeHandedOut(name: string): string | undefined {
    const pool = this.handedOut.get(name);
    this.handedOut.delete(name);
    return pool;
  }

  addRecycling(port: WarmPort): void {
    this.recycling.set(port.name, port);
  }

  /** True when the port was waiting for ReleaseAddress (and is no longer). */
  takeRecycling(name: string): boolean {
    return this.recycling.delete(name);
  }

  /** Ports of the pool that are ready, or will be once Docker releases their address. */
  count(pool: string): number {
    return this.known(pool).length;
  }

  /** Ports of the pool this host has plugged and not handed out: ready or recycling. */
  known(pool: string): WarmPort[] {
    return [...this.ready.values(), ...this.recycling.values()].filter((p) => p.pool === pool);
  }

  forget(name: string): void {
    this.ready.delete(name);
    this.handedOut.delete(name);
    this.recycling.delete(name);
  }
}
