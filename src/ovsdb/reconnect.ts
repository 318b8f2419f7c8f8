/**
 * Where and when the client connects next: the remotes in a shuffled order,
 * one after the other, with exponential backoff and full jitter between
 * attempts. stop() (the client closes) ends the pause at once; callers that
 * need the database now may shorten it (hurry).
 */
import { formatRemote, parseRemotes, type Remote } from './remote.js';

/** Connection attempts that waiting callers hurry along (hurry) still start this far apart. */
const HURRIED_ATTEMPT_GAP_MS = 1000;

export interface Backoff {
  initialMs: number;
  maxMs: number;
}

/** One connection's lifetime; resolves with whether it got in sync before it ended. */
export type Attempt = (remote: Remote, name: string) => Promise<boolean>;

export class Reconnector {
  /** The remotes of the option, shuffled once. */
  readonly remotes: Remote[];
  private remoteCursor = 0;
  private readonly wake: AbortController = new AbortController();
  /** Ends the pause before the next connection attempt early, while one runs. */
  private hurryReconnect: (() => void) | undefined;
  private lastAttemptAt = 0;

  constructor(
    remote: string,
    private readonly backoff: Backoff | undefined,
  ) {
    this.remotes = shuffle(parseRemotes(remote));
  }

  get stopped(): boolean {
    return this.wake.signal.aborted;
  }

  /** No more attempts; ends the pause before the next one. */
  stop(): void {
    this.wake.abort();
  }

  /** A caller needs the database now: shorten the pause before the next attempt, if one runs. */
  hurry(): void {
    this.hurryReconnect?.();
  }

  /** Run `attempt` on each remote in turn until stop(). */
  async run(attempt: Attempt): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      this.lastAttemptAt = Date.now();
      const remote = this.remotes[this.remoteCursor % this.remotes.length]!;
      this.remoteCursor++;
      const reachedReady = await attempt(remote, formatRemote(remote));
      if (this.stopped) break;
      failures = reachedReady ? 0 : failures + 1;
      await this.pause(this.backoffMs(failures));
    }
  }

  /** The pause before the next connection attempt: stop() ends it, and so may hurry(). */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const signal = this.wake.signal;
      let until = Date.now() + ms;
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.hurryReconnect = undefined;
        resolve();
      };
      if (signal.aborted) return done();
      timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
      // A caller needs the database now; attempts stay apart all the same, for the servers' sake.
      this.hurryReconnect = () => {
        const at = Math.max(Date.now(), this.lastAttemptAt + HURRIED_ATTEMPT_GAP_MS);
        if (at >= until) return;
        until = at;
        clearTimeout(timer);
        timer = setTimeout(done, at - Date.now());
      };
    });
  }

  /** Full jitter, growing once every remote of the list has failed in a row. */
  private backoffMs(failures: number): number {
    if (failures === 0) return Math.random() * 50;
    const { initialMs, maxMs } = this.backoff ?? { initialMs: 200, maxMs: 8000 };
    const rounds = Math.floor((failures - 1) / this.remotes.length);
    if (failures % this.remotes.length !== 0 && rounds === 0) return Math.random() * 50;
    return Math.random() * Math.min(maxMs, initialMs * 2 ** rounds);
  }
}

function shuffle<T>(items: T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
