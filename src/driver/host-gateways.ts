/**
 * `-o ovn.gateway=host`: this host is the network's gateway for its own
 * containers. The network's gateway address is an OVN localport (see
 * networks.ts); here an OVS internal interface on the integration bridge
 * binds to it on this chassis and carries the gateway address, so the host's
 * kernel routes (and masquerades) the containers' traffic. Every host of a
 * shared network does the same for its own containers. Docker then needs no
 * docker_gwbridge endpoint next to ours.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { Links } from '../host/links.js';
import type { HostNat } from '../host/nat.js';
import type { Ovs } from '../host/ovs.js';
import { Keys, OWNER } from '../ovn/keys.js';
import { macFromIPv4 } from '../ovn/mac.js';
import type { NetworkRecord, NetworkSpec } from '../ovn/networks.js';
import { addressBounds } from '../ovn/addressing.js';

export const GATEWAY_PREFIX = 'ovg';

export class HostGateways {
  /** Networks whose gateway this process has set up (after a restart, Join checks again). */
  private readonly ready = new Set<string>();

  constructor(
    private readonly ovs: Ovs,
    private readonly links: Links,
    private readonly nat: HostNat | undefined,
    private readonly bridge: string,
    private readonly log: Logger,
  ) {}

  /** Whether a network asks for the host as its gateway, and can have one. */
  static wanted(network: NetworkSpec): boolean {
    return network.options['ovn.gateway'] === 'host' && !network.internal && network.ipv4.some((s) => s.gateway);
  }

  /**
   * A route of this host into the network's IPv4 subnet through an interface
   * other than our gateway ports (a LAN, a VPN, a Docker bridge): the
   * gateway's connected route would take that traffic away from it.
   */
  async conflictingRoute(network: NetworkSpec): Promise<{ dst: string; dev?: string } | undefined> {
    const subnet = network.ipv4.find((s) => s.gateway)?.subnet;
    if (!subnet) return undefined;
    const [start, end] = addressBounds(subnet);
    for (const route of await this.links.ipv4Routes()) {
      if (route.dst === 'default' || route.dev?.startsWith(GATEWAY_PREFIX)) continue;
      const [rStart, rEnd] = addressBounds(route.dst.includes('/') ? route.dst : `${route.dst}/32`);
      if (rStart <= end && start <= rEnd) return route;
    }
    return undefined;
  }

  static interfaceName(networkId: string): string {
    return `${GATEWAY_PREFIX}${createHash('sha256').update(networkId).digest('hex').slice(0, 12)}`;
  }

  async ensure(network: NetworkRecord): Promise<void> {
    if (this.ready.has(network.networkId)) return;
    const v4 = network.ipv4.find((s) => s.gateway)!;
    const ifName = HostGateways.interfaceName(network.networkId);
    await this.ovs.attachPort({
      bridge: this.bridge,
      port: ifName,
      ifaceId: `${network.name}-gw`,
      attachedMac: macFromIPv4(v4.gateway!),
      internal: true,
      externalIds: { [Keys.owner]: OWNER, [Keys.role]: 'gateway', [Keys.networkId]: network.networkId },
    });
    await this.links.configureAddress(ifName, `${v4.gateway}/${v4.subnet.split('/')[1]}`, network.mtu);
    if (this.nat) {
      await this.nat.enableForwarding();
      await this.nat.ensure(v4.subnet, ifName);
    }
    this.ready.add(network.networkId);
    this.log.info({ networkId: network.networkId, interface: ifName, gateway: v4.gateway }, 'host gateway ready');
  }

  async remove(network: NetworkRecord): Promise<void> {
    const ifName = HostGateways.interfaceName(network.networkId);
    const v4 = network.ipv4.find((s) => s.gateway);
    if (this.nat && v4) await this.nat.remove(v4.subnet, ifName);
    await this.ovs.detachPort(this.bridge, ifName);
    this.ready.delete(network.networkId);
  }
}
