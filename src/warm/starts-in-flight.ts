/** How long a refill waits for the container starts in flight on its pool. */
export interface SettleTiming {
  /** A start counts as in flight for at most this long after its Join (an engine that never moves the interface, a stuck start). */
  maxStartMs: number;
  /** How often to look whether the engine has moved the interfaces. */
  pollMs: number;
}

/**
 * Container starts on warm ports that the engine has not finished: from
 * Join until the engine moves the port's container end into the container
 * (late in the start, from runc's prestart hook), the endpoint ends, or
 * `maxStartMs` passes. A refill waits for the starts in flight when it is
 * due, so that its NB writes (a full ovn-northd recompute each before OVN
 * 23.09), veths and flows do not compete for the CPU with the engine's work
 * on a burst (docs/warm-ports.md#bursts). Starts that Join later do not
 * hold it back: a steady stream of starts never starves the pool.
 */
export class StartsInFlight {
  /** Port name → its pool and when it joined. */
  private readonly starts = new Map<string, { pool: string; at: number }>();
  private closed = false;

  constructor(
    /** Which of these ports still have their container end in the host's namespace. */
    private readonly inHost: (portNames: string[]) => Promise<Set<string>>,
    private readonly timing: SettleTiming,
    private readonly now: () => number = Date.now,
  ) {}

  joined(pool: string, portName: string): void {
    this.starts.set(portName, { pool, at: this.now() });
  }

  /** The endpoint left, or the port went. */
  ended(portName: string): void {
    this.starts.delete(portName);
  }

  close(): void {
    this.closed = true;
  }

  /** Wait until every start in flight on `pool` now has finished; returns how many there were. */
  async settle(pool: string): Promise<number> {
    const waiting = new Set([...this.starts].filter(([, s]) => s.pool === pool).map(([name]) => name));
    const count = waiting.size;
    while (waiting.size > 0 && !this.closed) {
      for (const name of waiting) {
        const start = this.starts.get(name);
        if (!start || this.now() - start.at >= this.timing.maxStartMs) this.finish(waiting, name);
      }
      if (waiting.size === 0) break;
      // Where the host cannot be looked at, nothing is waited for: a refill late is worse than one beside a start.
      const still = await this.inHost([...waiting]).catch(() => new Set<string>());
      for (const name of waiting) if (!still.has(name)) this.finish(waiting, name);
      if (waiting.size > 0) await new Promise((resolve) => setTimeout(resolve, this.timing.pollMs).unref());
    }
    return count;
  }

  private finish(waiting: Set<string>, name: string): void {
    waiting.delete(name);
    this.starts.delete(name);
  }
}
