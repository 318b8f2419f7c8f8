import type { FastifyInstance } from 'fastify';
import type { FromSchema } from '../protocol/from-schema.js';

/**
 * POST `path`: the body, checked against `schema`, goes to `handler` as the
 * schema's type. The schema is an object's, so a missing body is refused
 * (400, "body must be object") before the handler.
 */
export function jsonRoute<const S extends { type: 'object' }>(
  app: FastifyInstance,
  path: string,
  schema: S,
  handler: (body: FromSchema<S>) => Promise<object> | object,
): void {
  app.post(path, { schema: { body: schema } }, async (request) => handler(request.body as FromSchema<S>));
}
