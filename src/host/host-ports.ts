/**
 * The host side of an endpoint: a veth pair whose host end is plugged into
 * the integration bridge with external_ids:iface-id = the OVN port name,
 * and whose container end Docker moves into the container.
 */
import type { Logger } from 'pino';
import type { Links } from './links.js';
import { hostIfName, isOurHostIf, peerIfName, peerOfHostIf } from './names.js';
import type { Ovs, OvsPort } from './ovs.js';
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
  /** Nested mode: the port's VLAN tag, making the host end an access port of that VLAN on the VM's bridge. */
  tag?: number;
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
    return (await this.plugMany([req]))[0]!;
  }

  /**
   * plug() for several ports: one `ip` and one `ovs-vsctl` for all of them
   * (a refill makes many, and each process costs the driver several ms of
   * CPU). Returns the container-side names.
   */
  async plugMany(reqs: readonly PlugRequest[]): Promise<string[]> {
    if (this.netdev === undefined) await this.detectDatapath();
    const peers = reqs.map((r) => peerIfName(r.portName));
    await this.links.createVeths(reqs.map((r, i) => ({ host: hostIfName(r.portName), peer: peers[i]!, mtu: r.mtu, peerMac: r.mac })));
    // Independent of each other: run them side by side.
    await Promise.all([
      this.netdev ? Promise.all(peers.map((peer) => this.links.disableTxChecksumOffload(peer))) : undefined,
      this.ovs.attachPorts(
        reqs.map((r) => ({
          bridge: this.bridge,
          port: hostIfName(r.portName),
          ifaceId: r.portName,
          attachedMac: r.mac,
          ...(r.tag !== undefined ? { tag: r.tag } : {}),
          externalIds: {
            [Keys.owner]: OWNER,
            ...(r.endpointId ? { [Keys.endpointId]: r.endpointId } : {}),
            ...(r.networkId ? { [Keys.networkId]: r.networkId } : {}),
          },
        })),
      ),
    ]);
    return peers;
  }

  /** Whether a port's veth is back in the host namespace, whole and unchanged, for reuse. */
  async isReusable(portName: string, mtu: number, mac: string): Promise<boolean> {
    return this.links.isIntactPair(hostIfName(portName), peerIfName(portName), { mtu, peerMac: mac });
  }

  /** Which of these ports still have their container end in the host namespace (the engine moves it late in a container's start). */
  async containerEndsHere(portNames: readonly string[]): Promise<Set<string>> {
    const here = await this.links.namesHere();
    return new Set(portNames.filter((name) => here.has(peerIfName(name))));
  }

  /** Unplug and delete the veth of a port; safe to call when any part is already gone. */
  async unplug(portName: string): Promise<void> {
    const host = hostIfName(portName);
    const [, hostDeleted] = await Promise.all([this.ovs.detachPort(this.bridge, host), this.links.deleteLink(host)]);
    // Deleting one end of a veth deletes both; only a lone container end (its host end gone) needs its own delete.
    if (!hostDeleted) await this.links.deleteLink(peerIfName(portName));
  }

  /**
   * Remove what a crash left: ports of ours on the bridge whose OVN port is
   * gone, with their veths. `livePorts` are the names of this host's ports
   * that NB has (endpoints' and warm ones); `evidence`, what else NB says.
   *
   * Only NB can say a port is gone, and an empty, restored or wrong NB would
   * have every container's port look gone, so its absence from NB proves it
   * only when NB knows this host (it has ports or networks of this host) or
   * the port's own switch. Otherwise nothing is removed, with a warning. A
   * removal that fails is logged and counted; the sweep goes on, since start-up
   * (and with it docker.service) must not depend on one stubborn link.
   */
  async reconcile(livePorts: () => Set<string>, evidence?: () => SweepEvidence): Promise<SweepResult> {
    const ours = (await this.ovs.listPorts(this.bridge)).filter(isEndpointPort);
    const links = await this.links.list();
    // Asked only now: a port's OVN row exists before its veth does, so every veth listed above whose port
    // is in OVN is in this set, even one being plugged while the listing ran.
    const live = livePorts();
    const nb = evidence?.();
    const stale = ours.filter((port) => {
      const ifaceId = port.externalIds.get('iface-id');
      return !(ifaceId && live.has(ifaceId) && port.port === hostIfName(ifaceId));
    });
    const hostKnown = live.size > 0 || nb?.hostKnown === true;
    const gone = stale.filter((port) => {
      const networkId = port.externalIds.get(Keys.networkId);
      return hostKnown || (networkId !== undefined && nb?.hasNetwork(networkId) === true);
    });
    const unproven = stale.filter((port) => !gone.includes(port));
    if (unproven.length) {
      this.log.warn(
        { count: unproven.length, ports: unproven.map((p) => p.port) },
        `${unproven.length} port(s) of ours on ${this.bridge} are missing from the OVN Northbound database, which shows no port${nb ? ' or network' : ''} of this host: ` +
          'they stay, since an empty, restored or wrong NB looks the same. If --ovn-nb names the right database and their containers are gone, ' +
          'stop the driver and run `ovn-docker-driver cleanup`.',
      );
    }
    const removed = await this.remove(gone, links);
    const unplugged = await this.removeUnplugged(links, new Set(ours.map((p) => p.port)), live, hostKnown);
    return { ...removed, links: removed.links + unplugged.links, failed: removed.failed + unplugged.failed, kept: unproven.length + unplugged.kept };
  }

  /**
   * Veth pairs of ours that never reached the bridge (a crash between
   * creating the pair and plugging it), or came back out of a container after
   * their port was unplugged: both ends in this namespace, named for one id,
   * and no port in NB by that name. Removed under the same evidence rule as
   * bridge ports; a pair whose container end is elsewhere is left alone.
   */
  private async removeUnplugged(
    links: { name: string; kind?: string }[],
    onBridge: ReadonlySet<string>,
    live: ReadonlySet<string>,
    hostKnown: boolean,
  ): Promise<{ links: number; failed: number; kept: number }> {
    const names = new Set(links.map((l) => l.name));
    const liveHostIfs = new Set([...live].map((name) => hostIfName(name)));
    const pairs = links.filter(
      (l) => l.kind === 'veth' && isOurHostIf(l.name) && !onBridge.has(l.name) && !liveHostIfs.has(l.name) && names.has(peerOfHostIf(l.name)),
    );
    const result = { links: 0, failed: 0, kept: 0 };
    if (!hostKnown) {
      result.kept = pairs.length;
      if (pairs.length) this.log.warn({ links: pairs.map((l) => l.name) }, 'veth pairs of ours off the bridge, kept: NB shows nothing of this host (see the warning on ports)');
      return result;
    }
    for (const { name } of pairs) {
      this.log.info({ link: name, peer: peerOfHostIf(name) }, `removing a veth pair of ours that is not on ${this.bridge} and has no port in OVN (left by a crash)`);
      try {
        if (await this.links.deleteLink(name)) result.links++;
      } catch (err) {
        result.failed++;
        this.log.warn({ link: name, err: (err as Error).message }, 'cannot delete the link; the next sweep tries again');
      }
    }
    return result;
  }

  /**
   * `cleanup`: every port of ours on the bridge, gateways aside (host-gateways.ts), with its veth. What
   * cannot be removed does not keep the rest; then it throws, so that the operator runs it again.
   */
  async removeAll(): Promise<SweepResult> {
    const ours = (await this.ovs.listPorts(this.bridge)).filter(isEndpointPort);
    const result = await this.remove(ours, await this.links.list());
    if (result.failed) throw new Error(`${result.failed} removal step(s) failed (see the warnings above); the rest is removed`);
    return { ...result, kept: 0 };
  }

  /** Unplug each port and delete its veth (or the lone container end); failures are logged and counted, never thrown. */
  private async remove(ports: OvsPort[], links: { name: string }[]): Promise<Omit<SweepResult, 'kept'>> {
    const existing = new Set(links.map((l) => l.name));
    const result = { ports: 0, links: 0, failed: 0 };
    for (const port of ports) {
      const ifaceId = port.externalIds.get('iface-id');
      const endpointId = port.externalIds.get(Keys.endpointId);
      this.log.info({ port: port.port, ifaceId, endpointId }, 'removing a bridge port whose OVN port is gone');
      const step = async (what: string, work: () => Promise<boolean>) => {
        try {
          return await work();
        } catch (err) {
          result.failed++;
          this.log.warn({ port: port.port, ifaceId, err: (err as Error).message }, `cannot ${what}; the next sweep tries again`);
          return false;
        }
      };
      if (await step(`detach the port from ${this.bridge}`, () => this.ovs.detachPort(this.bridge, port.port))) result.ports++;
      // The veth is ours by its name and this port; deleting one end deletes both, so a lone container end is the only other case.
      if (!isOurHostIf(port.port)) continue;
      const peer = peerOf(port);
      const target = existing.has(port.port) ? port.port : peer && existing.has(peer) ? peer : undefined;
      if (target && (await step(`delete link ${target}`, () => this.links.deleteLink(target)))) result.links++;
    }
    return result;
  }
}

/** What NB says besides the live port names, read when the sweep has listed the host (see HostPorts.reconcile). */
export interface SweepEvidence {
  /** Whether NB has the logical switch of this Docker network: a port of it missing from NB is gone. */
  hasNetwork(networkId: string): boolean;
  /** Whether NB has networks of this host: then any port of ours missing from NB is gone. */
  hostKnown: boolean;
}

export interface SweepResult {
  /** Bridge ports removed. */
  ports: number;
  /** Veths deleted. */
  links: number;
  /** Removal steps that failed (logged). */
  failed: number;
  /** Ports missing from NB left in place, NB giving no proof that they are gone. */
  kept: number;
}

/** An endpoint's or warm port's port; gateway ports belong to networks, not endpoints (see host-gateways.ts). */
function isEndpointPort(port: OvsPort): boolean {
  return port.externalIds.get(Keys.owner) === OWNER && port.externalIds.get(Keys.role) !== 'gateway';
}

/** The container end's name, when the port carries our name for its iface-id. */
function peerOf(port: OvsPort): string | undefined {
  const ifaceId = port.externalIds.get('iface-id');
  try {
    return ifaceId && hostIfName(ifaceId) === port.port ? peerIfName(ifaceId) : undefined;
  } catch {
    return undefined; // not an id of ours
  }
}
