import { ipv4Value, stripPrefix } from '../net/addressing.js';
import type { PortSetHint } from '../ovn/warm-port-creation.js';

/**
 * Where the warm ports of a network of Docker's IPAM go, per port set
 * (ovn/port-sets.ts): Docker gives each endpoint the lowest free address,
 * so a warm port takes one of the lowest addresses no port has. Two things
 * bend that: an --ip-range (Docker gives nothing below it; the lowest
 * address it was seen to give is the floor, only a hint, set again after a
 * restart by the first allocation), and endpoints being created right now
 * (no warm port may take their address meanwhile).
 */
export class AddressPredictor {
  /** Per set: the lowest address Docker was seen to give an endpoint. */
  private readonly floors = new Map<string, string>();
  /** Per set: addresses of endpoints being created right now, with how many at each. */
  private readonly inFlight = new Map<string, Map<string, number>>();
  /** Per set: the warm ports being created right now, and their addresses once chosen. */
  private readonly creations = new Map<string, { done: Promise<unknown>; ips: ReadonlySet<string> }>();

  floor(set: string): string | undefined {
    return this.floors.get(set);
  }

  /** Run the creation of warm ports in `set`, with the hint that keeps them off the addresses above. */
  async create<T>(set: string, create: (hint: PortSetHint) => Promise<T>): Promise<T> {
    const floor = this.floors.get(set);
    const creation: { done: Promise<unknown>; ips: ReadonlySet<string> } = { done: Promise.resolve(), ips: new Set() };
    const done = create({
      ...(floor ? { floor } : {}),
      avoid: () => this.inFlight.get(set)?.keys() ?? [],
      onChosen: (ips) => (creation.ips = new Set(ips)),
    });
    creation.done = done;
    this.creations.set(set, creation);
    try {
      return await done;
    } finally {
      if (this.creations.get(set) === creation) this.creations.delete(set);
    }
  }

  /**
   * An endpoint is about to get a port of its own at `ipv4`: from now on no
   * warm port is made at that address, and ports being made with it right
   * now are in NB when this resolves (the endpoint's transaction then takes it over).
   * Call the returned function when the endpoint exists.
   */
  async hold(set: string, ipv4: string): Promise<() => void> {
    const ip = stripPrefix(ipv4);
    const inFlight = this.inFlight.get(set) ?? new Map<string, number>();
    this.inFlight.set(set, inFlight);
    inFlight.set(ip, (inFlight.get(ip) ?? 0) + 1);
    // A creation not built yet sees the address in flight; one built with other addresses cannot pick it any more.
    const creation = this.creations.get(set);
    if (creation?.ips.has(ip)) await creation.done.catch(() => undefined);
    return () => {
      const left = (inFlight.get(ip) ?? 1) - 1;
      if (left > 0) inFlight.set(ip, left);
      else inFlight.delete(ip);
      if (inFlight.size === 0 && this.inFlight.get(set) === inFlight) this.inFlight.delete(set);
    };
  }

  /**
   * Docker gave an endpoint `ipv4` (`onWarmPort`: a warm port's). An address
   * given past a ready warm port (`readyIps`) means Docker skips that one (an
   * --ip-range, or an address it keeps for something else): the floor moves
   * up to it. (So does a --ip past it; the next address Docker gives below
   * the floor brings it back down.)
   */
  noteAllocation(set: string, ipv4: string, onWarmPort: boolean, readyIps: string[]): void {
    const ip = stripPrefix(ipv4);
    const floor = this.floors.get(set);
    const skipped = !onWarmPort && readyIps.some((ready) => below(stripPrefix(ready), ip));
    if (skipped || (floor !== undefined && below(ip, floor))) this.floors.set(set, ip);
  }

  forget(set: string): void {
    this.floors.delete(set);
  }
}

/** Whether IPv4 address `a` comes before `b` (either with or without a prefix). */
export function below(a: string, b: string): boolean {
  return ipv4Value(a) < ipv4Value(b);
}
