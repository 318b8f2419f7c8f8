/**
 * `-o ovn.gateway=host`: this host is the network's gateway for its own
 * containers. The network's gateway address is an OVN localport (see
 * ovn/gateway-port.ts); here an OVS internal interface on the integration bridge
 * binds to it on this chassis and carries the gateway address, so the host's
 * kernel routes (and masquerades) the containers' traffic. Every host of a
 * shared network does the same for its own containers. Docker then needs no
 * docker_gwbridge endpoint next to ours.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { Links } from './links.js';
import type { GatewayRule, HostFirewall } from './firewall.js';
import type { Ovs } from './ovs.js';
import { Sysctl } from './sysctl.js';
import { Keys, OWNER } from '../ovn/keys.js';
import { gatewayMac, gatewayPortName } from '../ovn/gateway-port.js';
import type { NetworkRecord, NetworkSpec } from '../ovn/records.js';
import { addressBounds } from '../net/addressing.js';

export const GATEWAY_PREFIX = 'ovg';

export class HostGateways {
  /** Networks whose gateway port this process has set up. */
  private readonly ready = new Set<string>();
  /** Their IPv4 side, by network id; the firewall's rules are made from them. */
  private readonly active = new Map<string, GatewayRule>();
  /** Those that route IPv6 too (the network has an IPv6 gateway and the host forwards IPv6). */
  private readonly active6 = new Map<string, GatewayRule & { gateway: string }>();
  private warnedNoForwarding6 = false;
  /** Set-ups under way: concurrent Joins of one network after a restart share one. */
  private readonly settingUp = new Map<string, Promise<void>>();

  constructor(
    private readonly ovs: Ovs,
    private readonly links: Links,
    private readonly firewall: HostFirewall | undefined,
    private readonly bridge: string,
    private readonly log: Logger,
    /** ip6tables (family 6), beside `firewall`: both or neither. */
    private readonly firewall6?: HostFirewall,
  ) {}

  /** The network's IPv6 gateway address, when this host routes its IPv6 too (after ensure()). */
  ipv6Gateway(networkId: string): string | undefined {
    return this.active6.get(networkId)?.gateway;
  }

  /** Whether a network asks for the host as its gateway, and can have one (IPv6-only networks: where the host forwards IPv6). */
  static wanted(network: NetworkSpec): boolean {
    return network.options['ovn.gateway'] === 'host' && !network.internal && [...network.ipv4, ...network.ipv6].some((s) => s.gateway);
  }

  /** The network's IPv4 gateway address on this host, once ensure()d. */
  ipv4Gateway(network: NetworkSpec): string | undefined {
    return this.active.has(network.networkId) ? network.ipv4.find((s) => s.gateway)?.gateway : undefined;
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

  ensure(network: NetworkRecord): Promise<void> {
    // Set up, IPv6 included where it can be (forwarding turned on later is found at the next Join).
    if (this.ready.has(network.networkId) && (this.active6.has(network.networkId) || !network.ipv6.some((s) => s.gateway))) return Promise.resolve();
    const running = this.settingUp.get(network.networkId);
    if (running) return running;
    const setUp = this.setUp(network).finally(() => this.settingUp.delete(network.networkId));
    this.settingUp.set(network.networkId, setUp);
    return setUp;
  }

  private async setUp(network: NetworkRecord): Promise<void> {
    const v4 = network.ipv4.find((s) => s.gateway);
    const ifName = HostGateways.interfaceName(network.networkId);
    if (this.ready.has(network.networkId)) return this.setUpIpv6(network, ifName);
    // IPv6-only, on a host that does not forward IPv6: no port (each Join looks again, one file read).
    if (!v4 && !(await this.ipv6Forwarding())) return this.warnNoForwarding6(network.networkId);
    await this.ovs.attachPort({
      bridge: this.bridge,
      port: ifName,
      ifaceId: gatewayPortName(network.name),
      attachedMac: gatewayMac(network.name, network),
      internal: true,
      externalIds: { [Keys.owner]: OWNER, [Keys.role]: 'gateway', [Keys.networkId]: network.networkId },
    });
    await this.links.configureGatewayIPv6(ifName, network.ipv6.length > 0);
    if (v4) await this.links.configureAddress(ifName, `${v4.gateway}/${v4.subnet.split('/')[1]}`, network.mtu);
    await this.setUpIpv6(network, ifName);
    if (!v4) {
      this.ready.add(network.networkId);
      this.log.info({ networkId: network.networkId, interface: ifName, gateway: this.ipv6Gateway(network.networkId) }, 'host gateway ready');
      return;
    }
    const rule = { subnet: v4.subnet, ifName };
    if (this.firewall) {
      await this.firewall.enableForwarding();
      this.active.set(network.networkId, rule);
      try {
        await this.firewall.apply([...this.active.values()]);
      } catch (err) {
        // Not set up: the next Join tries again.
        this.active.delete(network.networkId);
        throw err;
      }
    } else {
      this.active.set(network.networkId, rule);
    }
    // Only now: a step that failed above is tried again by the next Join.
    this.ready.add(network.networkId);
    this.log.info({ networkId: network.networkId, interface: ifName, gateway: v4.gateway }, 'host gateway ready');
  }

  /**
   * IPv6 through the host as well, where the network has an IPv6 gateway and
   * the host forwards IPv6 (the operator's choice: never turned on here).
   * Otherwise the containers have IPv6 on the network only, as before.
   */
  private async setUpIpv6(network: NetworkRecord, ifName: string): Promise<void> {
    const v6 = network.ipv6.find((s) => s.gateway);
    if (!v6) return;
    if (!(await this.ipv6Forwarding())) return this.warnNoForwarding6(network.networkId);
    await this.links.configureAddress(ifName, `${v6.gateway}/${v6.subnet.split('/')[1]}`, network.mtu, { nodad: true });
    const rule = { subnet: v6.subnet, ifName, gateway: v6.gateway! };
    this.active6.set(network.networkId, rule);
    if (!this.firewall6) return;
    try {
      await this.firewall6.apply(this.rules6());
    } catch (err) {
      this.active6.delete(network.networkId);
      throw err;
    }
  }

  private rules6(): GatewayRule[] {
    return [...this.active6.values()].map(({ subnet, ifName }) => ({ subnet, ifName }));
  }

  private warnNoForwarding6(networkId: string): void {
    if (this.warnedNoForwarding6) return;
    this.warnedNoForwarding6 = true;
    this.log.warn(
      { networkId },
      'IPv6 forwarding is off on this host: containers of IPv6 networks get no IPv6 route through it (IPv6-only ones get docker_gwbridge). To give them one: sysctl -w net.ipv6.conf.all.forwarding=1 (where an interface takes its IPv6 route from router advertisements, set its accept_ra=2 first), then reconnect the containers',
    );
  }

  private ipv6Forwarding(): Promise<boolean> {
    return this.firewall6?.forwarding() ?? new Sysctl().forwarding('ipv6');
  }

  async remove(network: NetworkRecord): Promise<void> {
    await this.settingUp.get(network.networkId)?.catch(() => undefined);
    const ifName = HostGateways.interfaceName(network.networkId);
    this.ready.delete(network.networkId);
    if (this.active6.delete(network.networkId)) await this.firewall6?.apply(this.rules6());
    if (this.active.delete(network.networkId)) await this.firewall?.apply([...this.active.values()]);
    await this.ovs.detachPort(this.bridge, ifName);
  }

  /**
   * After a start or a crash: the gateways of this host's networks are set
   * up again (their containers kept running while the driver was away).
   * Failures are logged: the network's next Join tries again.
   */
  async restore(networks: NetworkRecord[]): Promise<number> {
    const wanted = networks.filter((n) => HostGateways.wanted(n));
    for (const network of wanted) {
      await this.ensure(network).catch((err: unknown) =>
        this.log.error({ networkId: network.networkId, err }, 'cannot set up this host as the gateway of a network; its next Join tries again'),
      );
    }
    return wanted.length;
  }

  /**
   * Remove every gateway port of ours but those of `networks` and of gateways
   * being set up meanwhile; without any gateway left, no firewall rule of ours stays.
   * Unless `hostKnown` (NB has networks of this host), NB is no evidence that
   * a network is gone (an empty or wrong NB): nothing is removed then.
   * A port that cannot be removed is logged and the sweep goes on.
   */
  async sweep(networks: NetworkRecord[], hostKnown: boolean): Promise<number> {
    const keep = new Set(networks.filter((n) => HostGateways.wanted(n)).map((n) => n.networkId));
    const stray = (await this.ovs.listPorts(this.bridge)).filter((port) => {
      const networkId = port.externalIds.get(Keys.networkId) ?? '';
      if (port.externalIds.get(Keys.owner) !== OWNER || port.externalIds.get(Keys.role) !== 'gateway') return false;
      // Checked now, not before listing: a network created meanwhile has its set-up under way or done.
      return !keep.has(networkId) && !this.ready.has(networkId) && !this.settingUp.has(networkId);
    });
    if (stray.length > 0 && !hostKnown) {
      this.log.warn(
        { ports: stray.map((p) => p.port) },
        'NB has no network of this host, yet gateway ports of ours are on the bridge: keeping them. If NB was emptied or --ovn-nb is wrong, fix that; to remove them, stop the driver and run `ovn-docker-driver cleanup`',
      );
      return 0;
    }
    let removed = 0;
    for (const port of stray) {
      const networkId = port.externalIds.get(Keys.networkId);
      this.log.info({ port: port.port, networkId }, 'removing a gateway port whose network is gone');
      try {
        await this.ovs.detachPort(this.bridge, port.port);
        removed++;
      } catch (err) {
        this.log.error({ port: port.port, networkId, err }, 'cannot remove a gateway port; the next sweep tries again');
      }
    }
    if (this.firewall && this.active.size === 0 && this.settingUp.size === 0) await this.firewall.removeAll();
    if (this.firewall6 && this.active6.size === 0 && this.settingUp.size === 0) await this.firewall6.removeAll();
    return removed;
  }

  /** Remove every gateway port of ours and every firewall rule (the `cleanup` command). */
  async removeAll(): Promise<number> {
    this.ready.clear();
    this.active.clear();
    this.active6.clear();
    return this.sweep([], true);
  }
}
