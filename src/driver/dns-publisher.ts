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
  /** The engine may start after the driver (systemd orders the driver first): say so once, not every second. */
  private engineMissing = false;

  constructor(
    private readonly api: DockerApi,
    private readonly networks: OvnNetworks,
    private readonly chassis: string,
    private readonly log: Logger,
  ) {}

  /** Follow the engine's events; whenever the stream (re)opens, publish the containers already running. */
  start(): void {
    this.following = this.api.followNetworkEvents({
      onEvent: (e) => void this.onEvent(e),
      onConnected: () => {
        if (this.engineMissing) this.log.info('Docker engine API reachable again; publishing names');
        this.engineMissing = false;
        void this.syncAll();
      },
      onError: (err) => {
        if (!this.engineMissing) {
          this.log.warn({ err: err.message }, 'cannot follow the Docker engine events; container names wait until it answers');
        }
        this.engineMissing = true;
      },
      signal: this.stopping.signal,
    });
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
