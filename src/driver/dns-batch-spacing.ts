/**
 * When the next batch of container names goes to OVN DNS. Every change to a
 * DNS row costs ovn-northd a full recompute, on every OVN version, and that
 * CPU is taken from the container starts that produced the names. So a name
 * waits `firstDelayMs` after a quiet spell, and while names keep coming the
 * batches are spaced further apart each time (`spacingMs`, doubling up to
 * `maxSpacingMs`): a burst of starts costs a few recomputes, not one every
 * `spacingMs`, and a single start still gets its name in `firstDelayMs`.
 */
export interface DnsBatchTiming {
  /** After a quiet spell: how long the first name waits for others to join its batch. */
  firstDelayMs: number;
  /** The least time between two batches. */
  spacingMs: number;
  /** The most: a name waits at most this long during a burst of starts. */
  maxSpacingMs: number;
}

export const DEFAULT_DNS_BATCH_TIMING: DnsBatchTiming = { firstDelayMs: 500, spacingMs: 2000, maxSpacingMs: 8000 };

export class DnsBatchSpacing {
  /** When the last batch went (per `now`). */
  private lastBatchAt = -Infinity;
  private spacing: number;

  constructor(private readonly timing: DnsBatchTiming = DEFAULT_DNS_BATCH_TIMING) {
    this.spacing = timing.spacingMs;
  }

  /**
   * A name is waiting and no batch is scheduled: how long until its batch
   * goes. A name that arrives while the previous batch's spacing still runs
   * is part of a burst, and the batch after this one waits twice as long.
   */
  delayFor(now: number): number {
    const sinceLast = now - this.lastBatchAt;
    if (sinceLast >= this.spacing) {
      this.spacing = this.timing.spacingMs;
      return this.timing.firstDelayMs;
    }
    const delay = Math.max(this.timing.firstDelayMs, this.spacing - sinceLast);
    this.spacing = Math.min(this.timing.maxSpacingMs, this.spacing * 2);
    return delay;
  }

  /** The batch went at `now`. */
  taken(now: number): void {
    this.lastBatchAt = now;
  }
}
