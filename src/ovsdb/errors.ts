/**
 * Typed errors of the OVSDB client. Every error carries enough context to say
 * what failed (remote, method, table/column, failing operation) so that a
 * caller's log line is actionable without a debugger.
 */

export class OvsdbError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The byte stream is not a sequence of JSON objects, or a message is too large. */
export class FramingError extends OvsdbError {}

/** A remote string such as `tcp:host:port` could not be parsed. */
export class RemoteSyntaxError extends OvsdbError {
  constructor(readonly remote: string, reason: string) {
    super(`invalid OVSDB remote "${remote}": ${reason}`);
  }
}

/** The database schema sent by the server is malformed. */
export class SchemaError extends OvsdbError {}

/** A value does not fit the column type it is decoded from or encoded to. */
export class CodecError extends OvsdbError {
  constructor(
    message: string,
    readonly context: { table?: string; column?: string } = {},
  ) {
    const where = [context.table, context.column].filter(Boolean).join('.');
    super(where ? `${where}: ${message}` : message);
  }
}

/** The server answered a JSON-RPC request with an error. */
export class RpcError extends OvsdbError {
  constructor(
    readonly method: string,
    /** The server's error tag, e.g. "unknown database", "canceled". */
    readonly error: string,
    readonly details?: string,
    readonly syntax?: string,
  ) {
    super(`${method} failed: ${error}${details ? `: ${details}` : ''}`);
  }
}

/** One operation of a transaction (or its commit) failed. */
export class TransactionError extends OvsdbError {
  constructor(
    /** Index of the failing operation; equals the number of operations when the commit failed. */
    readonly index: number,
    /** The operation that failed (wire form), absent when the commit itself failed. */
    readonly operation: unknown,
    readonly error: string,
    readonly details?: string,
  ) {
    const what =
      operation === undefined
        ? 'commit'
        : `operation ${index} (${describeOp(operation)})`;
    super(`transaction ${what} failed: ${error}${details ? `: ${details}` : ''}`);
  }

  /** A `wait` guard did not hold: the rows changed since they were read. Retry after refreshing. */
  get isConflict(): boolean {
    return this.error === 'timed out';
  }
}

/** The connection closed (or was never up) while a request was outstanding. */
export class ConnectionClosedError extends OvsdbError {
  constructor(
    message: string,
    /** True when the request had been sent: it may or may not have been applied. */
    readonly outcomeUnknown: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A request did not get an answer in time. */
export class RequestTimeoutError extends OvsdbError {
  constructor(readonly method: string, readonly timeoutMs: number) {
    super(`${method} got no answer within ${timeoutMs} ms`);
  }
}

/** The local replica could not apply an update: it must be rebuilt. */
export class CacheInconsistentError extends OvsdbError {}

function describeOp(op: unknown): string {
  if (op && typeof op === 'object' && 'op' in op) {
    const o = op as { op?: unknown; table?: unknown };
    return [o.op, o.table].filter((x) => typeof x === 'string').join(' ');
  }
  return 'unknown';
}
