/**
 * Endpoints the engine no longer knows: when the driver dies during a
 * container start, the engine sees CreateEndpoint or Join fail and rolls
 * the endpoint back on its side without ever calling DeleteEndpoint, so
 * only the driver can find the port, veth and address left behind. It asks
 * the engine which endpoints each of this host's networks has, and removes
 * an endpoint of this host that has been missing for a grace period (a
 * create in flight is not in the engine's list until its Join).
 *
 * Only what is provably gone goes: a network the engine does not answer
 * for, or does not know, is skipped.
 */
import type { Logger } from 'pino';
import type { OvnNetworks } from '../ovn/networks.js';

export interface EngineEndpoints {
  /** The engine's endpoints on a network; undefined when it cannot tell. */
  endpointsOn(networkId: string): Promise<Set<string> | undefined>;
}

export interface OrphanSettings {
  chassis: string;
  /** How long an endpoint must be missing from the engine before it is removed. */
  graceMs: number;
  /** How often to look. */
  intervalMs: number;
}

export class OrphanSweeper {
  /** Endpoint id -> when it was first seen missing from the engine. */
  private readonly missingSince = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | undefined;

  constructor(
    private readonly engine: EngineEndpoints,
    private readonly networks: OvnNetworks,
    /** Removes an endpoint as the engine's DeleteEndpoint would. */
    private readonly remove: (networkId: string, endpointId: string) => Promise<void>,
    private readonly settings: OrphanSettings,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => void this.sweep().catch(() => undefined), this.settings.intervalMs).unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  /** One look; returns how many endpoints were removed. Calls made while one runs share it. */
  sweep(): Promise<number> {
    this.running ??= this.look().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async look(): Promise<number> {
    const now = Date.now();
    const mine = this.networks.listEndpoints().filter((e) => e.chassis === this.settings.chassis);
    const byNetwork = new Map<string, string[]>();
    for (const e of mine) byNetwork.set(e.networkId, [...(byNetwork.get(e.networkId) ?? []), e.endpointId]);
    const stillMissing = new Set<string>();
    let removed = 0;
    for (const [networkId, endpointIds] of byNetwork) {
      const known = await this.engine.endpointsOn(networkId);
      if (!known) continue;
      for (const endpointId of endpointIds) {
        if (known.has(endpointId)) continue;
        const since = this.missingSince.get(endpointId) ?? now;
        stillMissing.add(endpointId);
        this.missingSince.set(endpointId, since);
        if (now - since < this.settings.graceMs) continue;
        this.log.warn({ networkId, endpointId, missingMs: now - since }, 'removing an endpoint the engine no longer knows (left by a failed start)');
        try {
          await this.remove(networkId, endpointId);
          removed++;
          stillMissing.delete(endpointId);
        } catch (err) {
          this.log.error({ networkId, endpointId, err }, 'cannot remove an orphaned endpoint; the next sweep tries again');
        }
      }
    }
    // Forget endpoints that came back (a slow start) or went: only an unbroken absence counts.
    for (const id of this.missingSince.keys()) if (!stillMissing.has(id)) this.missingSince.delete(id);
    this.log.debug({ endpoints: mine.length, missing: stillMissing.size, removed }, 'orphan sweep done');
    return removed;
  }
}
