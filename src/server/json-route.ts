import type { FastifyInstance } from 'fastify';
import { DriverError } from '../driver/errors.js';
import type { FromSchema } from '../protocol/from-schema.js';

/** POST `path`: the body, checked against `schema`, goes to `handler` as the schema's type. */
export function jsonRoute<const S extends object>(
  app: FastifyInstance,
  path: string,
  schema: S,
  handler: (body: FromSchema<S>) => Promise<object> | object,
): void {
  app.post(path, { schema: { body: schema } }, async (request) => {
    if (request.body === undefined) throw new DriverError(`${path.slice(1)} needs a JSON body`, 400);
    // The schema has checked the body's shape; this is where it becomes the typed request.
    return handler(request.body as FromSchema<S>);
  });
}
