/**
 * The Docker plugin HTTP API: /Plugin.Activate and /NetworkDriver.*.
 *
 * The engine sends JSON without a Content-Type and expects HTTP 200 with a
 * JSON body on success; on failure we answer a non-200 status with
 * {"Err": "..."} (which both network and IPAM clients of the engine read).
 * Bodies are size-limited and schema-checked before any handler runs.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import { DriverError } from '../driver/errors.js';
import type { IpamDriver } from '../driver/ipam-driver.js';
import type { NetworkDriver } from '../driver/network-driver.js';
import {
  allocateNetworkSchema,
  createEndpointSchema,
  createNetworkSchema,
  discoverySchema,
  endpointSchema,
  joinSchema,
  networkSchema,
  releaseAddressSchema,
  releasePoolSchema,
  requestAddressSchema,
  requestPoolSchema,
  type AllocateNetworkRequest,
  type ReleaseAddressRequest,
  type ReleasePoolRequest,
  type RequestAddressRequest,
  type RequestPoolRequest,
  type CreateEndpointRequest,
  type CreateNetworkRequest,
  type EndpointRequest,
  type JoinRequest,
  type NetworkRequest,
} from './schemas.js';

export interface AppOptions {
  logger: FastifyBaseLogger;
  /** Largest request body accepted, in bytes. */
  bodyLimit?: number;
}

export function buildApp(driver: NetworkDriver, ipam: IpamDriver, options: AppOptions): FastifyInstance {
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

  // Requests that the engine sends with an empty body: any body is ignored.
  app.post('/Plugin.Activate', async () => ({ Implements: ['NetworkDriver', 'IpamDriver'] }));
  app.post('/NetworkDriver.GetCapabilities', async () => driver.getCapabilities());
  app.post('/IpamDriver.GetCapabilities', async () => ipam.getCapabilities());
  app.post('/IpamDriver.GetDefaultAddressSpaces', async () => ipam.getDefaultAddressSpaces());

  const route = <B>(path: string, schema: object, handler: (body: B) => Promise<object> | object) => {
    app.post<{ Body: B }>(path, { schema: { body: schema } }, async (request) => {
      if (request.body === undefined) throw new DriverError(`${path.slice(1)} needs a JSON body`, 400);
      // The schema has checked the body's shape; this is where it becomes the typed request.
      return handler(request.body as B);
    });
  };

  route<CreateNetworkRequest>('/NetworkDriver.CreateNetwork', createNetworkSchema, (b) => driver.createNetwork(b));
  route<NetworkRequest>('/NetworkDriver.DeleteNetwork', networkSchema, (b) => driver.deleteNetwork(b));
  route<CreateEndpointRequest>('/NetworkDriver.CreateEndpoint', createEndpointSchema, (b) => driver.createEndpoint(b));
  route<EndpointRequest>('/NetworkDriver.EndpointOperInfo', endpointSchema, (b) => driver.endpointOperInfo(b));
  route<EndpointRequest>('/NetworkDriver.DeleteEndpoint', endpointSchema, (b) => driver.deleteEndpoint(b));
  route<JoinRequest>('/NetworkDriver.Join', joinSchema, (b) => driver.join(b));
  route<EndpointRequest>('/NetworkDriver.Leave', endpointSchema, (b) => driver.leave(b));
  // External connectivity is the engine's job (docker_gwbridge), as with Docker's overlay.
  route<EndpointRequest>('/NetworkDriver.ProgramExternalConnectivity', endpointSchema, () => ({}));
  route<EndpointRequest>('/NetworkDriver.RevokeExternalConnectivity', endpointSchema, () => ({}));
  // Node discovery carries nothing OVN needs: the southbound database knows the chassis.
  route<object>('/NetworkDriver.DiscoverNew', discoverySchema, () => ({}));
  route<object>('/NetworkDriver.DiscoverDelete', discoverySchema, () => ({}));
  route<AllocateNetworkRequest>('/NetworkDriver.AllocateNetwork', allocateNetworkSchema, (b) => driver.allocateNetwork(b));
  route<NetworkRequest>('/NetworkDriver.FreeNetwork', networkSchema, () => ({}));

  route<RequestPoolRequest>('/IpamDriver.RequestPool', requestPoolSchema, (b) => ipam.requestPool(b));
  route<ReleasePoolRequest>('/IpamDriver.ReleasePool', releasePoolSchema, (b) => ipam.releasePool(b));
  route<RequestAddressRequest>('/IpamDriver.RequestAddress', requestAddressSchema, (b) => ipam.requestAddress(b));
  route<ReleaseAddressRequest>('/IpamDriver.ReleaseAddress', releaseAddressSchema, (b) => ipam.releaseAddress(b));

  return app;
}

function errorStatus(error: FastifyError | DriverError): number {
  if (error instanceof DriverError) return error.statusCode;
  if ('validation' in error && error.validation) return 400;
  const code = (error as FastifyError).statusCode;
  return typeof code === 'number' && code >= 400 && code < 600 ? code : 500;
}
