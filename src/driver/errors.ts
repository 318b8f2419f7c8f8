/**
 * Errors the HTTP layer turns into {"Err": ...}: the status tells a bad
 * request (4xx, nothing was changed) from a failure of OVN or the host (5xx).
 */
import { DomainError, type DomainErrorCode } from '../errors.js';

export type DriverStatus = 400 | 404 | 409 | 500 | 503;

export class DriverError extends Error {
  constructor(
    message: string,
    readonly statusCode: DriverStatus,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'DriverError';
  }
}

export const invalid = (message: string) => new DriverError(message, 400);

/** The status of each kind of refusal of the model (src/errors.ts). A pool with nothing left conflicts with what it holds. */
const STATUS: Record<DomainErrorCode, DriverStatus> = {
  invalid: 400,
  'not-found': 404,
  conflict: 409,
  exhausted: 409,
  unavailable: 503,
};

export function statusOf(code: DomainErrorCode): DriverStatus {
  return STATUS[code];
}

/**
 * What a failed call into the OVN model answers: a DriverError as it is, a
 * refusal (DomainError) with its message and status, and anything else as
 * OVN failing (503), its message put in context by `unavailable`.
 */
export function toDriverError(err: unknown, unavailable: (message: string) => string): DriverError {
  if (err instanceof DriverError) return err;
  if (err instanceof DomainError) return new DriverError(err.message, statusOf(err.code), { cause: err });
  return new DriverError(unavailable((err as Error).message), 503, { cause: err });
}
