/**
 * The Docker plugin HTTP API: /Plugin.Activate, and the routes of the
 * network and IPAM drivers (network-routes.ts, ipam-routes.ts).
 *
 * The engine sends JSON without a Content-Type and expects HTTP 200 with a
 * JSON body on success; on failure we answer a non-200 status with
 * {"Err": "..."} (which both network and IPAM clients of the engine read).
 * Bodies are size-limited and schema-checked before any handler runs.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import { DriverError } from '../driver/errors.js';
import { ipamRoutes, type IpamDriverMethods } from './ipam-routes.js';
import { networkRoutes, type NetworkDriverMethods } from './network-routes.js';

export interface AppOptions {
  logger: FastifyBaseLogger;
  /** Largest request body accepted, in bytes. */
  bodyLimit?: number;
}

export function buildApp(driver: NetworkDriverMethods, ipam: IpamDriverMethods, options: AppOptions): FastifyInstance {
  const bodyLimit = options.bodyLimit ?? 1024 * 1024;
  const app = Fastify({
    loggerInstance: options.logger,
    bodyLimit,
    // Handlers log what they do; per-request access lines would only repeat it.
    logController: new LogController({ disableRequestLogging: true }),
    // Strict validation: no type coercion, nothing silently dropped or defaulted.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
    // The engine's Go client keeps connections open indefinitely.
    keepAliveTimeout: 10 * 60 * 1000,
  });

  // At trace level, what the engine asked: what tells its callers apart (a swarm manager, a node).
  app.addHook('preHandler', async (request) => {
    request.log.trace({ url: request.url, body: request.body }, 'request');
  });
  app.addHook('onResponse', async (request, reply) => {
    request.log.debug({ url: request.url, status: reply.statusCode, ms: Number(reply.elapsedTime.toFixed(1)) }, 'handled');
  });

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string', bodyLimit }, (_req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text) as unknown);
    } catch {
      done(new DriverError('request body is not valid JSON', 400), undefined);
    }
  });

  app.setErrorHandler((error: FastifyError | DriverError, request, reply) => {
    const status = errorStatus(error);
    const message = 'validation' in error && error.validation
      ? `invalid ${request.url.slice(1)} request: ${error.message}`
      : error.message;
    if (status >= 500) request.log.error({ err: error, url: request.url }, message);
    else request.log.warn({ url: request.url, status }, message);
    void reply.status(status).send({ Err: message });
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.status(404).send({ Err: `${request.method} ${request.url} is not a method of this plugin` });
  });

  // The engine sends it with an empty body: any body is ignored.
  app.post('/Plugin.Activate', async () => ({ Implements: ['NetworkDriver', 'IpamDriver'] }));
  // Each in its own context: they share only what is set above (parser, error and not-found handlers, hook).
  void app.register(networkRoutes, { driver });
  void app.register(ipamRoutes, { ipam });

  return app;
}

function errorStatus(error: FastifyError | DriverError): number {
  if (error instanceof DriverError) return error.statusCode;
  if ('validation' in error && error.validation) return 400;
  const code = (error as FastifyError).statusCode;
  return typeof code === 'number' && code >= 400 && code < 600 ? code : 500;
}
