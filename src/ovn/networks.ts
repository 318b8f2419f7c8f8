/**
 * The network model the driver uses: Docker networks and endpoints as OVN
 * Northbound rows (a network is a Logical_Switch, an endpoint a
 * Logical_Switch_Port), and their DNS names. Every write is one transaction
 * built from the replica, idempotent (re-running it after a retry or a lost
 * reply converges on the same rows) and guarded against concurrent writers.
 * The work is done by switches.ts, endpoints.ts and dns-names.ts.
 */
import type { OvsdbClient, Replica, RowChange } from '../ovsdb/index.js';
import { OvnDnsNames, type PublishedNames } from './dns-names.js';
import { OvnEndpoints } from './endpoints.js';
import { networksOfHost, type EndpointRecord, type EndpointSpec, type NetworkRecord, type NetworkSpec } from './records.js';
import { OvnSwitches } from './switches.js';

export type { EndpointRecord, EndpointSpec, NetworkRecord, NetworkSpec, SubnetSpec } from './records.js';
export type { PublishedNames } from './dns-names.js';

export class OvnNetworks {
  private readonly switches: OvnSwitches;
  private readonly endpoints: OvnEndpoints;
  private readonly dns: OvnDnsNames;

  constructor(private readonly nb: OvsdbClient) {
    this.switches = new OvnSwitches(nb);
    this.endpoints = new OvnEndpoints(nb, this.switches);
    this.dns = new OvnDnsNames(nb, this.switches, this.endpoints);
  }

  get replica(): Replica {
    return this.nb.replica;
  }

  findNetwork(networkId: string): NetworkRecord | undefined {
    return this.switches.find(networkId);
  }

  /** Create the switch of a network, or attach it to its pool's (switches.ts). */
  ensureNetwork(spec: NetworkSpec): Promise<NetworkRecord> {
    return this.switches.ensure(spec);
  }

  /** Detach a network from its switch, the last one deleting it; false when there was none. */
  deleteNetwork(networkId: string): Promise<boolean> {
    return this.switches.delete(networkId);
  }

  /** Docker networks of this host (by chassis) that are attached to our switches. */
  localNetworkIds(chassis: string): string[] {
    return this.switches.localNetworkIds(chassis);
  }

  findEndpoint(endpointId: string): EndpointRecord | undefined {
    return this.endpoints.find(endpointId);
  }

  /** All endpoints this driver made, on any host. */
  listEndpoints(): EndpointRecord[] {
    return this.endpoints.list();
  }

  /** Create an endpoint's port unless it exists; `replaced` names leftover ports removed from its address (endpoints.ts). */
  ensureEndpoint(spec: EndpointSpec): Promise<{ endpoint: EndpointRecord; replaced: string[] }> {
    return this.endpoints.ensure(spec);
  }

  /** Remove an endpoint's port; false when there was none. */
  deleteEndpoint(endpointId: string): Promise<boolean> {
    return this.endpoints.delete(endpointId);
  }

  /** Resolve once OVN reports the port up (bound and its flows installed). */
  waitPortUp(portName: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return this.endpoints.waitPortUp(portName, timeoutMs, signal);
  }

  /**
   * Publish endpoints' DNS names in one transaction (dns-names.ts), on
   * switches that span hosts other than `chassis` (this host's): on the
   * others, nothing is written.
   */
  publishNames(entries: { endpointId: string; names: string[] }[], chassis: string): Promise<PublishedNames> {
    return this.dns.publish(entries, chassis);
  }

  /**
   * Call `listener` with the switches (uuids) that a port of a host other
   * than `chassis` joined, among those this host has a network on: the names
   * of this host's containers there are to be published (publishNames) and
   * their DNS rows synced (syncNames). Returns the unsubscribe function.
   */
  onOtherHostsJoining(chassis: string, listener: (switches: string[]) => void): () => void {
    const onChange = (changes: RowChange[]) => {
      const joined = this.dns.joinedByOtherHosts(this.nb.replica, changes, chassis);
      if (joined.length) listener(joined);
    };
    this.nb.on('change', onChange);
    return () => void this.nb.off('change', onChange);
  }

  /** This host's networks on these switches (uuids). */
  localNetworksOn(switchUuids: readonly string[], chassis: string): string[] {
    return switchUuids.flatMap((uuid) => {
      const ls = this.nb.replica.get('Logical_Switch', uuid);
      return ls ? networksOfHost(ls, chassis) : [];
    });
  }

  /** Sync the DNS rows of these switches (every switch this host has a network on when undefined) with their ports' names; returns the rows written. */
  syncNames(chassis: string, switches?: readonly string[]): Promise<number> {
    return this.dns.sync(chassis, switches);
  }
}
