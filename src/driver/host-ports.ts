/**
 * The host side of an endpoint: a veth pair whose host end is plugged into
 * the integration bridge with external_ids:iface-id = the OVN port name,
 * and whose container end Docker moves into the container.
 */
import type { Logger } from 'pino';
import type { Links } from '../host/links.js';
import { hostIfName, isOurHostIf, peerIfName } from '../host/names.js';
import type { Ovs } from '../host/ovs.js';
import { Keys, OWNER } from '../ovn/keys.js';

export interface PlugRequest {
  /**
   * Logical_Switch_Port name, written as external_ids:iface-id; the veth's
   * names derive from it. An endpoint's port is named after the endpoint id,
   * a warm port (warm-pool.ts) has a random id of the same shape.
   */
  portName: string;
  mac: string;
  mtu: number;
  /** Recorded on the OVS interface for whoever inspects it; warm ports have none yet. */
  endpointId?: string;
  networkId?: string;
}

export class HostPorts {
  private netdev: boolean | undefined;

  constructor(
    private readonly links: Links,
    private readonly ovs: Ovs,
    private readonly bridge: string,
    private readonly log: Logger,
  ) {}

  /**
   * Whether the bridge uses the userspace datapath: then TCP needs transmit
   * checksum offload off on the container side (packets would leave the
   * kernel with partial checksums that the userspace datapath never fills).
   */
  async detectDatapath(): Promise<string> {
    const type = await this.ovs.datapathType(this.bridge);
    this.netdev = type === 'netdev';
    return type;
  }

  /** Create (or re-use) the veth and plug it. Returns the container-side name. */
  async plug(req: PlugRequest): Promise<string> {
    const host = hostIfName(req.portName);
    const peer = peerIfName(req.portName);
    if (this.netdev === undefined) await this.detectDatapath();
    await this.links.createVeth(host, peer, { mtu: req.mtu, peerMac: req.mac });
    // Independent of each other: run them side by side.
    await Promise.all([
      this.netdev ? this.links.disableTxChecksumOffload(peer) : undefined,
      this.ovs.attachPort({
        bridge: this.bridge,
        port: host,
        ifaceId: req.portName,
        attachedMac: req.mac,
        externalIds: {
          [Keys.owner]: OWNER,
          ...(req.endpointId ? { [Keys.endpointId]: req.endpointId } : {}),
          ...(req.networkId ? { [Keys.networkId]: req.networkId } : {}),
        },
      }),
    ]);
    return peer;
  }

  /** Whether a port's veth is back in the host namespace, whole and unchanged, for reuse. */
  async isReusable(portName: string, mtu: number, mac: string): Promise<boolean> {
    return this.links.isIntactPair(hostIfName(portName), peerIfName(portName), { mtu, peerMac: mac });
  }

  /** Unplug and delete the veth of a port; safe to call when any part is already gone. */
  async unplug(portName: string): Promise<void> {
    const host = hostIfName(portName);
    const [, hostDeleted] = await Promise.all([this.ovs.detachPort(this.bridge, host), this.links.deleteLink(host)]);
    // Deleting one end of a veth deletes both; only a lone container end (its host end gone) needs its own delete.
    if (!hostDeleted) await this.links.deleteLink(peerIfName(portName));
  }

  /**
   * Remove what a crash left: bridge ports we made whose OVN port no longer
   * exists, and veths of ours that nothing uses. `livePorts` are the names
   * of this host's ports that still exist in OVN (endpoints' and warm ones).
   */
  async reconcile(livePorts: () => Set<string>): Promise<{ ports: number; links: number }> {
    const bridgePorts = await this.ovs.listPorts(this.bridge);
    const links = await this.links.list();
    // Asked only now: a port's OVN row exists before its veth does, so every veth listed above whose port
    // is in OVN is in this set, even one being plugged while the listing ran.
    const live = livePorts();
    const liveHostIfs = new Set([...live].map((name) => hostIfName(name)));
    let portsRemoved = 0;
    for (const port of bridgePorts) {
      // Gateway ports belong to networks, not endpoints (see host-gateways.ts).
      if (port.externalIds.get(Keys.owner) !== OWNER || port.externalIds.get(Keys.role) === 'gateway') continue;
      const ifaceId = port.externalIds.get('iface-id');
      if (ifaceId && live.has(ifaceId) && port.port === hostIfName(ifaceId)) continue;
      const endpointId = port.externalIds.get(Keys.endpointId);
      this.log.info({ port: port.port, ifaceId, endpointId }, 'removing a bridge port whose OVN port is gone');
      await this.ovs.detachPort(this.bridge, port.port);
      await this.links.deleteLink(port.port);
      portsRemoved++;
    }
    let linksRemoved = 0;
    for (const link of links) {
      if (!isOurHostIf(link.name) || liveHostIfs.has(link.name)) continue;
      this.log.info({ link: link.name }, 'removing a veth whose endpoint is gone');
      if (await this.links.deleteLink(link.name)) linksRemoved++;
    }
    return { ports: portsRemoved, links: linksRemoved };
  }
}
