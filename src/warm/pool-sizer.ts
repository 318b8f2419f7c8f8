/** How many warm ports a pool keeps, and when that changes (docs/warm-ports.md#bursts). */
export interface PoolSizing {
  /** Ports kept per switch while idle (--warm-ports); 0 turns warm ports off. */
  min: number;
  /** The most a pool grows to for bursts (--warm-ports-max); never below `min`. */
  max: number;
  /** After this long without a container start on a pool, its size halves, back down to `min`. */
  idleMs: number;
}

/**
 * The size of each pool: `min`, plus one for every container start that
 * found the pool empty (ports handed out faster than refills make them),
 * up to `max`. So a burst of N starts leaves the pool sized for the next
 * burst of N. Idle pools shrink back by halves; `onShrink` is told, so
 * that the pool lets its extra ports go.
 */
export class PoolSizer {
  private readonly sizes = new Map<string, number>();
  private readonly idleTimers = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly sizing: PoolSizing,
    private readonly onShrink: (pool: string, size: number) => void,
  ) {}

  /** The most ports a pool grows to. */
  get bound(): number {
    return Math.max(this.sizing.min, this.sizing.max);
  }

  size(pool: string): number {
    return this.sizes.get(pool) ?? this.sizing.min;
  }

  /** A container start on `pool`; `short` when it found no warm port left there. Returns the pool's size. */
  started(pool: string, short: boolean): number {
    const size = short ? Math.min(this.bound, this.size(pool) + 1) : this.size(pool);
    if (size > this.sizing.min) this.sizes.set(pool, size);
    this.armIdle(pool);
    return size;
  }

  /** After a restart: the ports that survived show the size the pool had; it keeps them until it is idle. */
  resume(pool: string, ports: number): void {
    const size = Math.min(this.bound, ports);
    if (size <= this.size(pool)) return;
    this.sizes.set(pool, size);
    this.armIdle(pool);
  }

  forget(pool: string): void {
    clearTimeout(this.idleTimers.get(pool));
    this.idleTimers.delete(pool);
    this.sizes.delete(pool);
  }

  close(): void {
    for (const timer of this.idleTimers.values()) clearTimeout(timer);
    this.idleTimers.clear();
  }

  private armIdle(pool: string): void {
    clearTimeout(this.idleTimers.get(pool));
    this.idleTimers.delete(pool);
    if (this.size(pool) <= this.sizing.min) return;
    const timer = setTimeout(() => {
      this.idleTimers.delete(pool);
      const size = this.sizing.min + Math.floor((this.size(pool) - this.sizing.min) / 2);
      if (size > this.sizing.min) this.sizes.set(pool, size);
      else this.sizes.delete(pool);
      this.armIdle(pool);
      this.onShrink(pool, size);
    }, this.sizing.idleMs);
    timer.unref();
    this.idleTimers.set(pool, timer);
  }
}
