/**
 * The one error type of the network and address model (src/ovn, src/net):
 * a refusal whose code says what kind it is, so that the driver answers it
 * with the right status (driver/errors.ts) whichever part refused. Any
 * other error is a failure of OVN or the host, not of the request.
 */
export type DomainErrorCode =
  /** Something the request names does not exist (a network, endpoint, pool, port). */
  | 'not-found'
  /** The request clashes with what exists: an address, MAC, subnet or range held otherwise. */
  | 'conflict'
  /** The request itself is malformed: a CIDR, a PoolID, an address outside its pool. */
  | 'invalid'
  /** Nothing is left to give: a pool without a free address, the default range without a free /24. */
  | 'exhausted'
  /** What the request needs cannot be reached now; retrying later may succeed. */
  | 'unavailable';

export class DomainError extends Error {
  override name = 'DomainError';

  constructor(
    message: string,
    readonly code: DomainErrorCode,
    /** What the refusal is about (ids, addresses), for logs. */
    readonly context: Readonly<Record<string, string>> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
