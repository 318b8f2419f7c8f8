/**
 * The update notifications (update, update2, update3) of one connection's
 * monitors, each handed to its monitor in the order they came. Updates that
 * arrive before their monitor's reply was applied are held back until it was
 * (release); the updates of a dropped monitor, and of monitors nobody asked
 * to hold, are discarded.
 */

/** Applies one update notification of a monitor: its method and all its params (the monitor id first). */
export type UpdateHandler = (method: string, params: unknown[]) => void;

export class MonitorUpdates {
  /** Updates that arrived before their monitor's reply was applied. */
  private readonly buffered = new Map<string, unknown[][]>();
  /** Monitors whose reply was applied: their updates are applied as they come. */
  private readonly live = new Set<string>();
  private readonly handlers = new Map<string, UpdateHandler>();

  /** Before asking for monitor `id`: hold its updates back until release(id), then give them to `handler`. */
  hold(id: string, handler: UpdateHandler): void {
    this.handlers.set(id, handler);
    this.buffered.set(id, []);
  }

  /** A notification of the connection; those that are not a monitor's update are ignored. */
  receive(method: string, params: unknown[]): void {
    if (method !== 'update' && method !== 'update2' && method !== 'update3') return;
    const id = params[0];
    if (typeof id !== 'string') return;
    if (!this.live.has(id)) {
      this.buffered.get(id)?.push([method, ...params]);
      return;
    }
    this.apply(id, method, params);
  }

  /** Monitor `id`'s reply is applied: apply what it held back, then its updates as they come. */
  release(id: string): void {
    const pending = this.buffered.get(id) ?? [];
    this.buffered.set(id, []);
    this.live.add(id);
    for (const [method, ...params] of pending) {
      // A failed update ends the monitor; what it buffered after that is stale.
      if (!this.live.has(id)) break;
      this.apply(id, method as string, params);
    }
  }

  /** Stop applying monitor `id`'s updates and discard what it held back. */
  drop(id: string): void {
    this.live.delete(id);
    this.buffered.delete(id);
    this.handlers.delete(id);
  }

  private apply(id: string, method: string, params: unknown[]): void {
    this.handlers.get(id)?.(method, params);
  }
}
