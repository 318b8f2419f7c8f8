import type { Logger } from 'pino';

export interface RefillTiming {
  /** Wait this long before trying again after a failed refill; doubled after each failure in a row. */
  retryDelayMs: number;
  /** The longest wait between retries. */
  maxRetryDelayMs: number;
}

/**
 * When each pool is refilled: after a delay (so a refill does not compete
 * with the container start that emptied it), one refill per pool at a time
 * (one asked for while one runs runs after it), and after a failure again
 * later, backing off while OVN is down instead of churning ports.
 */
export class RefillScheduler {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly running = new Map<string, Promise<void>>();
  /** Failed refills in a row, per pool. */
  private readonly failures = new Map<string, number>();
  private closed = false;

  constructor(
    private readonly fill: (pool: string) => Promise<void>,
    private readonly timing: RefillTiming,
    private readonly log: Logger,
  ) {}

  /**
   * Refill the pool in `delayMs`, unless a refill is already waiting to start;
   * with `postpone`, a waiting one starts `delayMs` from now instead (while
   * containers keep starting, a refill would compete with them for the CPU).
   */
  schedule(pool: string, delayMs: number, postpone = false): void {
    if (this.closed) return;
    if (this.timers.has(pool)) {
      if (!postpone) return;
      clearTimeout(this.timers.get(pool));
      this.timers.delete(pool);
    }
    const timer = setTimeout(() => {
      this.timers.delete(pool);
      this.run(pool);
    }, delayMs);
    timer.unref();
    this.timers.set(pool, timer);
  }

  /** Drop the pool's waiting refill, and wait for one running to end. */
  async cancel(pool: string): Promise<void> {
    clearTimeout(this.timers.get(pool));
    this.timers.delete(pool);
    this.failures.delete(pool);
    await this.running.get(pool);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    await Promise.allSettled(this.running.values());
  }

  private run(pool: string): void {
    const previous = this.running.get(pool) ?? Promise.resolve();
    const next = previous.then(() => this.attempt(pool));
    this.running.set(pool, next);
    void next.finally(() => {
      if (this.running.get(pool) === next) this.running.delete(pool);
    });
  }

  private async attempt(pool: string): Promise<void> {
    try {
      await this.fill(pool);
      if (this.failures.delete(pool)) this.log.info({ pool }, 'warm ports can be made again');
    } catch (err) {
      const failures = (this.failures.get(pool) ?? 0) + 1;
      this.failures.set(pool, failures);
      const retryInMs = Math.min(this.timing.retryDelayMs * 2 ** (failures - 1), this.timing.maxRetryDelayMs);
      this.log.warn(
        { pool, err: (err as Error).message, failures, retryInMs },
        'cannot make a warm port; containers on this network start without one (and wait for OVN in Join) until a retry succeeds. ' +
          'Check that ovn-controller runs and reaches the southbound database.',
      );
      this.schedule(pool, retryInMs);
    }
  }
}
