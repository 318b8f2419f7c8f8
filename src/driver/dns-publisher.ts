/**
 * Publishes containers' names in OVN, so that a container resolves a
 * container of another host by name (Docker's embedded DNS only knows its
 * own engine's containers). Names come from the local engine's API: the
 * plugin protocol never carries them. Removal rides on DeleteEndpoint.
 * Connections are published in batches (dns-batch-spacing.ts says when),
 * each in one NB transaction; a container gone before its batch costs none.
 * Names go to NB only on switches that span hosts (ovn/dns-names.ts): when
 * another host's port joins one of this host's switches, the next batch
 * publishes the names of this host's containers there, from the engine.
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
  private readonly pending = new Map<string, Connection>();
  /** Switches (uuids) another host's port joined: the next batch publishes this host's names there and syncs their DNS rows. */
  private readonly pendingSyncs = new Set<string>();
  private unwatch: (() => void) | undefined;
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
    this.unwatch = this.networks.onOtherHostsJoining(this.chassis, (switches) => {
      for (const uuid of switches) this.pendingSyncs.add(uuid);
      this.schedule();
    });
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
    this.unwatch?.();
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

  /**
   * Publish every container on this host's networks (after a restart, events
   * were missed), then sync the DNS rows of its switches that span hosts
   * (another host may have joined meanwhile).
   */
  async syncAll(): Promise<number> {
    const { pairs } = await this.containersOn(this.networks.localNetworkIds(this.chassis));
    const published = await this.publish(pairs);
    const synced = await this.networks.syncNames(this.chassis);
    if (synced) this.log.info({ switches: synced }, 'DNS rows of switches shared with other hosts synced');
    return published;
  }

  /** This host's containers on these networks, per the engine; `failed`: networks it could not list. */
  private async containersOn(networkIds: string[]): Promise<{ pairs: Connection[]; failed: string[] }> {
    const pairs: Connection[] = [];
    const failed: string[] = [];
    for (const networkId of networkIds) {
      try {
        for (const containerId of await this.api.containersOn(networkId)) pairs.push({ containerId, networkId });
      } catch (err) {
        failed.push(networkId);
        this.log.warn({ networkId, err: (err as Error).message }, 'cannot list the containers of a network');
      }
    }
    return { pairs, failed };
  }

  private onEvent(e: NetworkEvent): void {
    if (e.action !== 'connect' || !this.networks.findNetwork(e.networkId)) return;
    this.pending.set(`${e.containerId} ${e.networkId}`, { containerId: e.containerId, networkId: e.networkId });
    this.schedule();
  }

  private schedule(): void {
    if (this.batchTimer || this.stopping.signal.aborted) return;
    this.batchTimer = setTimeout(() => {
      this.batchTimer = undefined;
      this.spacing.taken(performance.now());
      const batch = [...this.pending.values()];
      this.pending.clear();
      const syncs = [...this.pendingSyncs];
      this.pendingSyncs.clear();
      // One batch at a time, in order; a sync after the names, so that its row has them.
      this.flushing = this.flushing.then(async () => {
        // Another host joined these switches: this host's names there were never written (dns-names.ts), publish them all.
        const joined = syncs.length ? await this.containersOn(this.networks.localNetworksOn(syncs, this.chassis)) : { pairs: [], failed: [] };
        const connections = new Map([...batch, ...joined.pairs].map((c) => [`${c.containerId} ${c.networkId}`, c]));
        if (connections.size) {
          await this.publish([...connections.values()]).catch((err: unknown) =>
            this.log.warn({ containers: connections.size, err: (err as Error).message }, 'cannot publish container names in OVN'),
          );
        }
        if (joined.failed.length) return this.retrySyncs(syncs);
        if (syncs.length) await this.syncSwitches(syncs);
      });
    }, this.spacing.delayFor(performance.now()));
  }

  private async syncSwitches(switches: string[]): Promise<void> {
    try {
      const synced = await this.networks.syncNames(this.chassis, switches);
      if (synced) this.log.info({ switches: synced }, 'another host joined: DNS rows synced with the names of the switch');
    } catch (err) {
      this.log.warn({ switches: switches.length, err: (err as Error).message }, 'cannot sync the DNS rows of switches shared with other hosts; retrying');
      this.retrySyncs(switches);
    }
  }

  /** No NB change may come to trigger it again: the next batch publishes and syncs these switches once more. */
  private retrySyncs(switches: string[]): void {
    for (const uuid of switches) this.pendingSyncs.add(uuid);
    this.schedule();
  }

  /** Publish the names of these connections in one NB transaction; returns how many endpoints got theirs. */
  private async publish(pairs: Connection[]): Promise<number> {
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
    const { published, local } = await this.networks.publishNames(entries, this.chassis);
    if (published.length) this.log.info({ endpoints: published.length, entries: entries.filter((e) => published.includes(e.endpointId)) }, 'names published in OVN');
    // Docker's embedded DNS answers them; OVN gets them when another host joins the switch.
    if (local.length) {
      this.log.debug({ endpoints: local.length, entries: entries.filter((e) => local.includes(e.endpointId)) }, 'names left to Docker: their networks are on no other host');
    }
    return published.length;
  }
}

interface Connection {
  containerId: string;
  networkId: string;
}

const RESYNC_RETRY_MS = 2000;
const RESYNC_MAX_RETRY_MS = 60_000;
