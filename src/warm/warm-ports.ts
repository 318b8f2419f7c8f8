import type { EndpointRecord, EndpointSpec, NetworkRecord } from '../ovn/records.js';

/**
 * Warm ports: ports a host keeps ready ahead of its containers, so that a
 * container start finds its port bound and its flows installed (see
 * docs/warm-ports.md). The driver reaches them only through this interface:
 * at CreateEndpoint (adopt a port, or hold its address while the endpoint
 * gets its own), at Join (ready as it is?), at Leave and DeleteEndpoint
 * (keep the port for the next container), and from the IPAM driver (hand
 * out a ready port's address, take it back).
 */
export interface WarmPorts {
  /** After a (re)start: clean what the previous run left, take surviving ports back, fill every switch. */
  start(): Promise<void>;
  close(): Promise<void>;
  /** Every warm port of this host, in any state: the host sweep keeps their veths. */
  portNames(): string[];

  /** A network of this host was created: fill its switch. */
  networkCreated(): void;
  /** This host's last network on the switch of `network` is going: its warm ports there go. */
  lastNetworkLeaving(network: NetworkRecord): Promise<void>;

  /**
   * CreateEndpoint of a new endpoint: adopt the warm port at its address, or
   * else make its own port with `makeOwn`, with no warm port made at its
   * address meanwhile. `warm` tells which.
   */
  endpointPort(network: NetworkRecord, spec: EndpointSpec, makeOwn: () => Promise<EndpointRecord>): Promise<{ endpoint: EndpointRecord; warm: boolean }>;
  /** Join: true when the port is a warm one, plugged and with its flows installed, so Join answers at once. */
  takeReady(portName: string): boolean;
  /** Leave: whether DeleteEndpoint may keep the port, so Leave must leave its veth in place. */
  mayRecycle(endpoint: EndpointRecord, network: NetworkRecord): boolean;
  /** DeleteEndpoint: keep the port for the next container instead of deleting it; false when the caller must. */
  recycle(endpoint: EndpointRecord, network: NetworkRecord): Promise<boolean>;

  /** RequestAddress on our IPAM: a ready port's address in `pool`, now held by `holder`, if there is one. */
  claim(pool: string, holder: string): Promise<string | undefined>;
  /** ReleaseAddress on our IPAM: true when a kept port holds the address again, as warm; any other port at it goes. */
  released(pool: string, ip: string): Promise<boolean>;
}
