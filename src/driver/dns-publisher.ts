/**
 * Publishes containers' names in OVN DNS, so that a container resolves a
 * container of another host by name (Docker's embedded DNS only knows its
 * own engine's containers). Names come from the local engine's API: the
 * plugin protocol never carries them. Removal rides on DeleteEndpoint.
 */
import type { Logger } from 'pino';
import type { DockerApi, NetworkEvent } from '../docker/api.js';
import type { OvnNetworks } from '../ovn/networks.js';

export class DnsPublisher {
  private readonly stopping = new AbortController();
  private following: Promise<void> | undefined;

  constructor(
    private readonly api: DockerApi,
    private readonly networks: OvnNetworks,
    private readonly chassis: string,
    private readonly log: Logger,
  ) {}

  /** Follow the engine's events, and publish the containers already running. */
  start(): void {
    this.following = this.api.followNetworkEvents(
      (e) => void this.onEvent(e),
      this.stopping.signal,
      (err) => this.log.warn({ err: err.message }, 'Docker event stream broke; names of new containers wait for it to return'),
    );
    void this.syncAll();
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    await this.following;
  }

  /** Publish every container on this host's networks (after a restart, events were missed). */
  async syncAll(): Promise<number> {
    let published = 0;
    for (const networkId of this.networks.localNetworkIds(this.chassis)) {
      try {
        for (const containerId of await this.api.containersOn(networkId)) {
          if (await this.publish(containerId, networkId)) published++;
        }
      } catch (err) {
        this.log.warn({ networkId, err: (err as Error).message }, 'cannot list the containers of a network');
      }
    }
    return published;
  }

  private async onEvent(e: NetworkEvent): Promise<void> {
    if (e.action !== 'connect' || !this.networks.findNetwork(e.networkId)) return;
    try {
      await this.publish(e.containerId, e.networkId);
    } catch (err) {
      this.log.warn({ containerId: e.containerId, err: (err as Error).message }, 'cannot publish a container name in OVN DNS');
    }
  }

  private async publish(containerId: string, networkId: string): Promise<boolean> {
    const info = await this.api.inspectContainer(containerId);
    const attachment = info?.networks.find((n) => n.NetworkID === networkId);
    if (!info || !attachment?.EndpointID) return false;
    const names = [info.name, ...(attachment.Aliases ?? [])];
    const done = await this.networks.publishNames(attachment.EndpointID, names);
    if (done) this.log.info({ endpointId: attachment.EndpointID, names }, 'names published in OVN DNS');
    return done;
  }
}
