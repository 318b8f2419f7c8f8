/**
 * Publishes containers' names in OVN DNS, so that a container resolves a
 * container of another host by name (Docker's embedded DNS only knows its
 * own engine's containers). Names come from the local engine's API: the
 * plugin protocol never carries them. Removal rides on DeleteEndpoint.
 * Connections are published in batches (dns-batch-spacing.ts says when),
 * each in one NB transaction; a container gone before its batch costs none.
 */
import type { Logger } from 'pino';
import type { DockerApi, NetworkEvent } from '../docker/api.js';
import type { OvnNetworks } from '../ovn/networks.js';
import { DEFAULT_DNS_BATCH_TIMING, DnsBatchSpacing, type DnsBatchTiming } from './dns-batch-spacing.js';

export class DnsPublisher {
  private readonly stopping = new AbortController();
  private following: Promise<void> | undefined;
  /** The engine may start after the driver (systemd orders the driver first): say so once, not every second. */
  private engineMissing = false;
  /** Connections waiting for the next batch: "container network" -> the pair. */
  private readonly pending = new Map<string, { containerId: string; networkId: string }>();
  private batchTimer: NodeJS.Timeout | undefined;
  private readonly spacing: DnsBatchSpacing;
  private flushing: Promise<void> = Promise.resolve();
  /** Bumped by every sync started: only the latest failed one schedules a retry. */
  private syncs = 0;
  private resyncTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly api: DockerApi,
    private readonly networks: OvnNetworks,
    private readonly chassis: string,
    private readonly log: Logger,
    timing: DnsBatchTiming = DEFAULT_DNS_BATCH_TIMING,
  ) {
    this.spacing = new DnsBatchSpacing(timing);
  }

  /** Follow the engine's events; whenever the stream (re)opens, publish the containers already running. */
  start(): void {
    this.following = this.api.followNetworkEvents({
      onEvent: (e) => void this.onEvent(e),
      onConnected: () => {
        if (this.engineMissing) this.log.info('Docker engine API reachable again; publishing names');
        this.engineMissing = false;
        this.resync();
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
    clearTimeout(this.batchTimer);
    clearTimeout(this.resyncTimer);
    await this.following;
    await this.flushing;
  }

  /**
   * syncAll() in the background, never rejecting: NB may be down or hung just
   * when the stream (re)opens, and these names were missed with the events,
   * so a failure is logged and the sync tried again until one succeeds.
   */
  private resync(attempt = 0): void {
    clearTimeout(this.resyncTimer);
    const sync = ++this.syncs;
    this.syncAll().catch((err: unknown) => {
      if (this.stopping.signal.aborted || sync !== this.syncs) return;
      const retryInMs = Math.min(RESYNC_RETRY_MS * 2 ** attempt, RESYNC_MAX_RETRY_MS);
      this.log.warn(
        { err: (err as Error).message, retryInMs },
        'cannot publish the names of the running containers in OVN DNS; retrying. Check that the OVN Northbound database answers.',
      );
      this.resyncTimer = setTimeout(() => this.resync(attempt + 1), retryInMs);
    });
  }

  /** Publish every container on this host's networks (after a restart, events were missed). */
  async syncAll(): Promise<number> {
    const pairs: { containerId: string; networkId: string }[] = [];
    for (const networkId of this.networks.localNetworkIds(this.chassis)) {
      try {
        for (const containerId of await this.api.containersOn(networkId)) pairs.push({ containerId, networkId });
      } catch (err) {
        this.log.warn({ networkId, err: (err as Error).message }, 'cannot list the containers of a network');
      }
    }
    return this.publish(pairs);
  }

  private onEvent(e: NetworkEvent): void {
    if (e.action !== 'connect' || !this.networks.findNetwork(e.networkId)) return;
    this.pending.set(`${e.containerId} ${e.networkId}`, { containerId: e.containerId, networkId: e.networkId });
    if (this.batchTimer) return;
    this.batchTimer = setTimeout(() => {
      this.batchTimer = undefined;
      this.spacing.taken(performance.now());
      const batch = [...this.pending.values()];
      this.pending.clear();
      // One batch at a time, in order.
      this.flushing = this.flushing.then(() =>
        this.publish(batch).then(
          () => undefined,
          (err: unknown) => this.log.warn({ containers: batch.length, err: (err as Error).message }, 'cannot publish container names in OVN DNS'),
        ),
      );
    }, this.spacing.delayFor(performance.now()));
  }

  /** Publish the names of these connections in one NB transaction; returns how many endpoints got theirs. */
  private async publish(pairs: { containerId: string; networkId: string }[]): Promise<number> {
    const entries: { endpointId: string; names: string[] }[] = [];
    for (const { containerId, networkId } of pairs) {
      // A container gone since it connected has nothing to publish.
      const info = await this.api.inspectContainer(containerId).catch((err: unknown) => {
        this.log.warn({ containerId, err: (err as Error).message }, 'cannot read a container from the Docker engine; its names are not published');
        return undefined;
      });
      const attachment = info?.networks.find((n) => n.NetworkID === networkId);
      if (info && attachment?.EndpointID) entries.push({ endpointId: attachment.EndpointID, names: [info.name, ...(attachment.Aliases ?? [])] });
    }
    if (entries.length === 0) return 0;
    const published = await this.networks.publishNames(entries);
    if (published.length) this.log.info({ endpoints: published.length, entries: entries.filter((e) => published.includes(e.endpointId)) }, 'names published in OVN DNS');
    return published.length;
  }
}

const RESYNC_RETRY_MS = 2000;
const RESYNC_MAX_RETRY_MS = 60_000;
