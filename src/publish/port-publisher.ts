/**
 * Ports published by this host for its containers (`docker run -p/-P` on a
 * network whose gateway is this host): the engine's Program and Revoke
 * calls, per endpoint. Each publication is a host port held open
 * (port-reservations.ts) and DNAT'ed to the container in the driver's own
 * firewall chains (host/firewall.ts). What is published is recorded on the
 * endpoint's OVS interface (external_ids), so that a restarted driver puts
 * the same rules and holds back, and it goes with the port.
 *
 * The engine checks no host port of a remote driver: conflicts are found
 * here, and refused in Docker's own words. A holder whose veth is gone (its
 * container died with dockerd, which then never revoked it) gives its ports up.
 */
import type { Logger } from 'pino';
import { DomainError } from '../errors.js';
import type { HostFirewall, PublishedRule } from '../host/firewall.js';
import type { Links } from '../host/links.js';
import { hostIfName } from '../host/names.js';
import type { Ovs } from '../host/ovs.js';
import { Keys } from '../ovn/keys.js';
import { overlaps, PortAllocator, type Taken } from './port-allocator.js';
import { describe, isIpv6Address, requestKey, type PortRequest, type Protocol } from './port-map.js';
import { PortReservations } from './port-reservations.js';

/** What an endpoint publishes through: its address, and its network's gateway port on this host. */
export interface PublishTarget {
  endpointId: string;
  /** The endpoint's OVN port name; its veth is named after it (host/names.ts). */
  portName: string;
  networkId: string;
  /** IPv4, no prefix. */
  containerIp: string;
  /** The network's gateway port (ovg…) and IPv4 subnet. */
  ifName: string;
  subnet: string;
}

export interface Published {
  protocol: Protocol;
  /** As in PortRequest: '' = every address of the host, '0.0.0.0' every IPv4 one, '::' every IPv6 one. */
  hostIp: string;
  hostPort: number;
  containerPort: number;
  /** The request it answers (port-map.ts requestKey): asked again, it keeps its host port. */
  request: string;
}

export interface EndpointPublications extends PublishTarget {
  ports: Published[];
}

export class PortPublisher {
  private readonly byEndpoint = new Map<string, EndpointPublications>();
  private readonly reservations = new PortReservations();
  private readonly allocator: PortAllocator;
  /** Program, Revoke and restore one at a time: a port is chosen and held in one step. */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly ovs: Ovs,
    private readonly links: Links,
    private readonly firewall: HostFirewall,
    private readonly bridge: string,
    ephemeral: { low: number; high: number },
    private readonly log: Logger,
  ) {
    this.allocator = new PortAllocator(ephemeral);
  }

  /** What an endpoint publishes now (for EndpointOperInfo and the logs). */
  published(endpointId: string): Published[] {
    return this.byEndpoint.get(endpointId)?.ports ?? [];
  }

  /**
   * Publish exactly `requests` for the endpoint, replacing what it published
   * before; a request asked again keeps its host port. On a refusal nothing
   * changes.
   */
  program(target: PublishTarget, requests: PortRequest[]): Promise<Published[]> {
    return this.serialized(() => this.programNow(target, requests));
  }

  /** Stop publishing the endpoint's ports; false when it published none. */
  revoke(endpointId: string): Promise<boolean> {
    return this.serialized(() => this.revokeNow(endpointId));
  }

  /**
   * At start: the publications recorded on the bridge's interfaces, held
   * again and handed to the firewall, whose next rebuild (the gateways'
   * restore) writes them; `apply()` after that makes sure. Returns how many endpoints.
   */
  restore(): Promise<number> {
    return this.serialized(async () => {
      const { records, unreadable } = await readPublications(this.ovs, this.bridge);
      if (unreadable.length) this.log.warn({ ports: unreadable }, `ignoring unreadable ${Keys.published} records`);
      for (const record of records) {
        this.byEndpoint.set(record.endpointId, record);
        for (const p of record.ports) {
          if (!(await this.reservations.reserve(p, () => this.targetOf(p)))) {
            this.log.warn({ endpointId: record.endpointId, port: describePublished(p) }, 'a published port is in use by another program on this host: its traffic still goes to the container');
          }
        }
      }
      await this.applyRules({ defer: true });
      return this.byEndpoint.size;
    });
  }

  /**
   * Write the rules of what is published now (after restore(), once the
   * start-up sweep ran): publications whose interface the sweep removed
   * (their endpoint was gone) are dropped first.
   */
  apply(): Promise<void> {
    return this.serialized(async () => {
      const recorded = new Set((await readPublications(this.ovs, this.bridge)).records.map((r) => r.endpointId));
      for (const [endpointId, record] of this.byEndpoint) {
        if (recorded.has(endpointId)) continue;
        this.byEndpoint.delete(endpointId);
        for (const p of record.ports) if (!this.heldByAnyone(p)) this.reservations.release(p);
        this.log.info({ endpointId, ports: record.ports.map(describePublished) }, 'ports no longer published: their endpoint was removed as a leftover');
      }
      await this.applyRules();
    });
  }

  close(): void {
    this.reservations.closeAll();
  }

  private async programNow(target: PublishTarget, requests: PortRequest[]): Promise<Published[]> {
    for (const r of requests) {
      if (r.protocol === 'sctp' && isIpv6Address(r.hostIp)) {
        throw new DomainError(
          `cannot publish ${describe(r)}: SCTP is published on IPv4 host addresses only; leave the address out or give an IPv4 one`,
          'invalid',
          { endpointId: target.endpointId },
        );
      }
    }
    const before = this.byEndpoint.get(target.endpointId);
    // The engine programs every container's gateway endpoint, most with no ports: nothing to write then.
    if (!before && requests.length === 0) return [];
    const kept = new Map((before?.ports ?? []).map((p) => [p.request, p]));
    const others = [...this.byEndpoint.values()].filter((e) => e.endpointId !== target.endpointId);
    const chosen: Published[] = [];
    const newlyHeld: Published[] = [];
    try {
      for (const r of requests) {
        const again = kept.get(requestKey(r));
        if (again) {
          chosen.push(again);
          continue;
        }
        const free = async (hostPort: number) => {
          const candidate = { protocol: r.protocol, hostIp: r.hostIp, hostPort };
          if (chosen.some((p) => overlaps(p, candidate))) return false;
          if (others.some((e) => e.ports.some((p) => overlaps(p, candidate))) && !(await this.reclaimStale(others, candidate))) return false;
          // The very port the endpoint holds already (asked for again under another request) is free to it.
          const own = before?.ports.some((p) => sameHostPort(p, candidate));
          return own === true || this.reservations.reserve(candidate, () => this.targetOf(candidate));
        };
        const hostPort = await this.allocator.choose(r, free);
        if (hostPort === undefined) {
          const where = r.hostPort === 0 ? `${hostAddress(r.hostIp)}: no free port left in the range` : `${hostAddress(r.hostIp)}:${r.hostPort}${r.hostPortEnd > r.hostPort ? `-${r.hostPortEnd}` : ''} failed: port is already allocated`;
          throw new DomainError(`Bind for ${where}`, 'conflict', { endpointId: target.endpointId, port: describe(r) });
        }
        const published = { protocol: r.protocol, hostIp: r.hostIp, hostPort, containerPort: r.containerPort, request: requestKey(r) };
        chosen.push(published);
        if (!before?.ports.some((p) => sameHostPort(p, published))) newlyHeld.push(published);
      }
      // The same map again (a retry, or 29.0 re-programming the gateway): everything is in place already.
      if (before && chosen.length === before.ports.length && chosen.every((p) => before.ports.includes(p)) && sameTarget(before, target)) return chosen;
      const record: EndpointPublications = { ...target, ports: chosen };
      // Recorded before the rules: a crash in between leaves a record the next start puts in force, never a rule nothing records.
      const recorded = await this.ovs.setInterfaceExternalId(hostIfName(target.portName), Keys.published, chosen.length ? formatRecord(record) : undefined);
      if (!recorded && chosen.length) {
        throw new Error(`the endpoint's interface ${hostIfName(target.portName)} is not on ${this.bridge} (was the container stopped meanwhile?)`);
      }
      if (chosen.length) this.byEndpoint.set(target.endpointId, record);
      else this.byEndpoint.delete(target.endpointId);
      await this.applyRules();
    } catch (err) {
      if (before) this.byEndpoint.set(target.endpointId, before);
      else this.byEndpoint.delete(target.endpointId);
      for (const p of newlyHeld) if (!this.heldByAnyone(p)) this.reservations.release(p);
      throw err;
    }
    for (const p of before?.ports ?? []) if (!chosen.includes(p) && !this.heldByAnyone(p)) this.reservations.release(p);
    if (chosen.length) this.log.info({ endpointId: target.endpointId, ports: chosen.map(describePublished) }, 'ports published');
    return chosen;
  }

  private async revokeNow(endpointId: string): Promise<boolean> {
    const record = this.byEndpoint.get(endpointId);
    if (!record) return false;
    this.byEndpoint.delete(endpointId);
    try {
      await this.applyRules();
      await this.ovs.setInterfaceExternalId(hostIfName(record.portName), Keys.published, undefined);
    } catch (err) {
      // Still published: Revoke or the next start tries again.
      this.byEndpoint.set(endpointId, record);
      throw err;
    }
    for (const p of record.ports) if (!this.heldByAnyone(p)) this.reservations.release(p);
    this.log.info({ endpointId, ports: record.ports.map(describePublished) }, 'ports no longer published');
    return true;
  }

  /**
   * A conflicting holder whose veth is gone died without a Revoke (dockerd
   * was killed with it): it gives its ports up. True when `candidate` is free then.
   */
  private async reclaimStale(others: EndpointPublications[], candidate: Taken): Promise<boolean> {
    const holders = others.filter((e) => this.byEndpoint.has(e.endpointId) && e.ports.some((p) => overlaps(p, candidate)));
    for (const holder of holders) {
      if (await this.links.exists(hostIfName(holder.portName))) return false;
    }
    for (const holder of holders) {
      this.log.warn({ endpointId: holder.endpointId, port: `${hostAddress(candidate.hostIp)}:${candidate.hostPort}/${candidate.protocol}` }, 'taking over a published port whose container is gone (its engine never revoked it)');
      await this.revokeNow(holder.endpointId);
      holder.ports = [];
    }
    return true;
  }

  /** Where traffic to a held host port goes now (the proxied IPv6 part of a publication). */
  private targetOf(held: Taken): { host: string; port: number } | undefined {
    for (const e of this.byEndpoint.values()) {
      const p = e.ports.find((q) => sameHostPort(q, held));
      if (p) return { host: e.containerIp, port: p.containerPort };
    }
    return undefined;
  }

  private heldByAnyone(p: Taken): boolean {
    return [...this.byEndpoint.values()].some((e) => e.ports.some((q) => sameHostPort(q, p)));
  }

  private applyRules(options: { defer?: boolean } = {}): Promise<void> {
    // IPv6 host addresses have no rule: their sockets forward (port-proxy.ts).
    const rules: PublishedRule[] = [...this.byEndpoint.values()].flatMap((e) =>
      e.ports.filter((p) => !isIpv6Address(p.hostIp)).map((p) => ({
        protocol: p.protocol,
        hostIp: p.hostIp === '0.0.0.0' ? '' : p.hostIp,
        hostPort: p.hostPort,
        containerIp: e.containerIp,
        containerPort: p.containerPort,
        ifName: e.ifName,
        subnet: e.subnet,
      })),
    );
    return this.firewall.publish(rules, options);
  }

  private serialized<T>(work: () => Promise<T>): Promise<T> {
    const run = this.tail.then(work, work);
    this.tail = run.catch(() => undefined);
    return run;
  }
}

/** The same socket: protocol, host address and port (overlaps() is wider: '' meets every address). */
function sameHostPort(a: Taken, b: Taken): boolean {
  return a.protocol === b.protocol && a.hostIp === b.hostIp && a.hostPort === b.hostPort;
}

function sameTarget(a: PublishTarget, b: PublishTarget): boolean {
  return a.portName === b.portName && a.containerIp === b.containerIp && a.ifName === b.ifName && a.subnet === b.subnet && a.networkId === b.networkId;
}

/** As `docker port` prints it. */
export function describePublished(p: Published): string {
  return `${hostAddress(p.hostIp)}:${p.hostPort}->${p.containerPort}/${p.protocol}`;
}

/** A host address as Docker writes it before ":port": '' (both families) as its IPv4 part, IPv6 in brackets. */
function hostAddress(ip: string): string {
  return ip === '' ? '0.0.0.0' : isIpv6Address(ip) ? `[${ip}]` : ip;
}

/** What the interfaces on `bridge` record as published (`ovn-docker-driver ports`, and a restart). */
export async function readPublications(ovs: Ovs, bridge: string): Promise<{ records: EndpointPublications[]; unreadable: string[] }> {
  const records: EndpointPublications[] = [];
  const unreadable: string[] = [];
  for (const port of await ovs.listPorts(bridge)) {
    const text = port.externalIds.get(Keys.published);
    if (text === undefined) continue;
    const record = parseRecord(text);
    if (record && hostIfName(record.portName) === port.port) records.push(record);
    else unreadable.push(port.port);
  }
  return { records, unreadable };
}

/* ---- The record on the OVS interface: compact JSON, checked when read back ---- */

function formatRecord(r: EndpointPublications): string {
  return JSON.stringify({
    e: r.endpointId,
    n: r.networkId,
    port: r.portName,
    ip: r.containerIp,
    if: r.ifName,
    s: r.subnet,
    p: r.ports.map((p) => [p.protocol, p.hostIp, p.hostPort, p.containerPort, p.request]),
  });
}

function parseRecord(text: string): EndpointPublications | undefined {
  try {
    const v = JSON.parse(text) as Record<string, unknown>;
    const str = (x: unknown) => (typeof x === 'string' ? x : undefined);
    const [endpointId, networkId, portName, containerIp, ifName, subnet] = [v.e, v.n, v.port, v.ip, v.if, v.s].map(str);
    if (!endpointId || !networkId || !portName || !containerIp || !ifName || !subnet || !Array.isArray(v.p)) return undefined;
    const ports: Published[] = [];
    for (const entry of v.p as unknown[]) {
      if (!Array.isArray(entry) || entry.length !== 5) return undefined;
      const [protocol, hostIp, hostPort, containerPort, request] = entry as unknown[];
      if (protocol !== 'tcp' && protocol !== 'udp' && protocol !== 'sctp') return undefined;
      if (typeof hostIp !== 'string' || typeof request !== 'string') return undefined;
      if (!isPort(hostPort) || !isPort(containerPort)) return undefined;
      ports.push({ protocol, hostIp, hostPort, containerPort, request });
    }
    return { endpointId, networkId, portName, containerIp, ifName, subnet, ports };
  } catch {
    return undefined;
  }
}

function isPort(x: unknown): x is number {
  return typeof x === 'number' && Number.isInteger(x) && x >= 1 && x <= 65535;
}
