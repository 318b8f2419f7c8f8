/**
 * transaction(): builds a transaction from the replica and commits it,
 * re-running the closure after a conflict on one of its guards or a lost
 * connection, all attempts within one budget. It gives up with an error that
 * names the database, its remote and what to check; once one gave up, the
 * others fail fast until the database answers again, each hurrying the next
 * connection attempt.
 */
import { ConnectionClosedError, RequestTimeoutError, RpcError, TransactionError } from './errors.js';
import type { Logger } from './logger.js';
import type { Replica } from './replica.js';
import type { Transaction, TransactionResult } from './transaction.js';

export interface TransactionOptions {
  /** How often to re-run the closure after a conflict or a lost connection (default 5). */
  retries?: number;
  timeoutMs?: number;
  /** Recorded in the database log (`ovsdb-tool show-log`). */
  comment?: string;
}

/** What the runner needs of the client's session. */
export interface RunnerSession {
  /** Whether a connection is up and the replica in sync. */
  isReady(): boolean;
  isClosed(): boolean;
  /** Why the last connection ended or failed, if it did. */
  lastError(): Error | undefined;
  whenReady(timeoutMs: number): Promise<void>;
  /** Shorten the pause before the next connection attempt. */
  hurry(): void;
  replica(): Replica;
  /** Resolves once the replica holds the rows the monitor's conditions, as last set, ask for. */
  conditionsSettled(timeoutMs: number): Promise<void>;
  newTransaction(): Transaction;
  /** Send a built transaction once. */
  transact(tx: Transaction, options: { timeoutMs: number }): Promise<TransactionResult>;
}

export interface RunnerOptions {
  database: string;
  /** The remote option, as the user wrote it. */
  remote: string;
  remoteCount: number;
  /** The default budget of transaction(). */
  timeoutMs: number;
  log: Logger;
}

/**
 * Once a transaction went unanswered for its whole budget, how long others
 * wait for a session before they fail too: a hurried attempt (below) and a
 * local sync fit in it.
 */
const UNREACHABLE_WAIT_MS = 2000;

export class TransactionRunner {
  /**
   * Set when a transaction gave up unanswered, cleared by the next reply or
   * session in sync: meanwhile, transactions without a session fail within
   * UNREACHABLE_WAIT_MS instead of each waiting a budget of its own (a
   * Docker call may need several in a row).
   */
  private unreachableSince: number | undefined;

  constructor(
    private readonly session: RunnerSession,
    private readonly options: RunnerOptions,
  ) {}

  /** The database answered (a reply, or a session in sync). */
  answered(): void {
    this.unreachableSince = undefined;
  }

  /** OvsdbClient.transaction(), which says what `build` must do. */
  async run<T>(
    build: (tx: Transaction, replica: Replica) => T,
    options: TransactionOptions = {},
  ): Promise<{ value: T; result: TransactionResult | undefined }> {
    const session = this.session;
    const retries = options.retries ?? 5;
    const started = Date.now();
    const deadline = started + (options.timeoutMs ?? this.options.timeoutMs);
    const left = () => Math.max(1, deadline - Date.now());
    let outcomeUnknown = false;
    for (let attempt = 0; ; attempt++) {
      const known = session.isReady() ? undefined : this.unreachableSince;
      if (known !== undefined) session.hurry();
      await session.whenReady(known === undefined ? left() : Math.min(left(), UNREACHABLE_WAIT_MS)).catch((err: unknown) => {
        throw session.isClosed() ? err : this.giveUp(known ?? started, session.lastError(), outcomeUnknown);
      });
      // `build` reads the rows its caller's conditions ask for (a network of this host just created, say).
      await session.conditionsSettled(left()).catch((err: unknown) => {
        throw session.isClosed() ? err : this.giveUp(started, err as Error, outcomeUnknown);
      });
      const replica = session.replica();
      const seqno = replica.seqno;
      const tx = session.newTransaction();
      const value = build(tx, replica);
      if (tx.isEmpty) return { value, result: undefined };
      if (options.comment) tx.comment(options.comment);
      try {
        return { value, result: await session.transact(tx, { timeoutMs: left() }) };
      } catch (err) {
        const unanswered = err instanceof RequestTimeoutError || err instanceof ConnectionClosedError;
        outcomeUnknown ||= err instanceof RequestTimeoutError || (err instanceof ConnectionClosedError && err.outcomeUnknown);
        if (attempt >= retries || !isRetryable(err, tx)) throw unanswered ? this.giveUp(started, err, outcomeUnknown) : err;
        this.options.log.debug({ err: (err as Error).message, attempt }, 'transaction will be retried');
        if (err instanceof TransactionError) {
          // Updates precede the reply, so news is normally here already; wait briefly if not.
          await replica
            .waitFor(() => (replica.seqno > seqno ? true : undefined), { timeoutMs: Math.min(1000, left()), what: 'replica update' })
            .catch(() => undefined);
        }
      }
    }
  }

  /** A transaction the database did not answer since `since`: which database, where, why, and what to check. */
  private giveUp(since: number, cause: Error | undefined, outcomeUnknown: boolean): ConnectionClosedError {
    this.unreachableSince ??= since;
    const where = this.options.remote;
    const probe = this.options.remoteCount === 1 ? `ovsdb-client list-dbs ${where}` : `ovsdb-client list-dbs with each of ${where}`;
    return new ConnectionClosedError(
      `no answer from ${this.options.database} at ${where} for ${Date.now() - since} ms${cause ? ` (${cause.message})` : ''}: ` +
        `check that its ovsdb-server runs and that this host reaches it (${probe}); the client keeps reconnecting`,
      outcomeUnknown,
      { cause },
    );
  }
}

function isRetryable(err: unknown, tx: Transaction): boolean {
  if (err instanceof TransactionError) return err.isConflict && tx.guardIndexes.has(err.index);
  if (err instanceof RpcError) return err.error === 'canceled';
  return err instanceof ConnectionClosedError;
}
