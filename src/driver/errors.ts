/**
 * Errors the HTTP layer turns into {"Err": ...}: the status tells a bad
 * request (4xx, nothing was changed) from a failure of OVN or the host (5xx).
 */
export class DriverError extends Error {
  constructor(
    message: string,
    readonly statusCode: 400 | 404 | 409 | 500 | 503,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'DriverError';
  }
}

export const invalid = (message: string) => new DriverError(message, 400);
