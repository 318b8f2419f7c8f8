import type { FastifyPluginAsync } from 'fastify';
import type { NetworkDriver } from '../driver/network-driver.js';
import {
  allocateNetworkSchema,
  createEndpointSchema,
  createNetworkSchema,
  discoverySchema,
  endpointSchema,
  gwAllocCheckSchema,
  joinSchema,
  networkSchema,
} from '../protocol/network-driver.js';
import { jsonRoute } from './json-route.js';

export type NetworkDriverMethods = Pick<
  NetworkDriver,
  'getCapabilities' | 'gwAllocCheck' | 'createNetwork' | 'deleteNetwork' | 'createEndpoint' | 'endpointOperInfo' | 'deleteEndpoint' | 'join' | 'leave' | 'allocateNetwork'
>;

/** /NetworkDriver.*: libnetwork's remote network driver API. */
export const networkRoutes: FastifyPluginAsync<{ driver: NetworkDriverMethods }> = async (app, { driver }) => {
  // The engine sends it with an empty body: any body is ignored.
  app.post('/NetworkDriver.GetCapabilities', async () => driver.getCapabilities());
  // Engine 28+, as GetCapabilities offers it: before IPAM reserves a new network's gateway addresses.
  jsonRoute(app, '/NetworkDriver.GwAllocCheck', gwAllocCheckSchema, (b) => driver.gwAllocCheck(b));

  jsonRoute(app, '/NetworkDriver.CreateNetwork', createNetworkSchema, (b) => driver.createNetwork(b));
  jsonRoute(app, '/NetworkDriver.DeleteNetwork', networkSchema, (b) => driver.deleteNetwork(b));
  jsonRoute(app, '/NetworkDriver.CreateEndpoint', createEndpointSchema, (b) => driver.createEndpoint(b));
  jsonRoute(app, '/NetworkDriver.EndpointOperInfo', endpointSchema, (b) => driver.endpointOperInfo(b));
  jsonRoute(app, '/NetworkDriver.DeleteEndpoint', endpointSchema, (b) => driver.deleteEndpoint(b));
  jsonRoute(app, '/NetworkDriver.Join', joinSchema, (b) => driver.join(b));
  jsonRoute(app, '/NetworkDriver.Leave', endpointSchema, (b) => driver.leave(b));
  // External connectivity is the engine's job (docker_gwbridge), as with Docker's overlay.
  jsonRoute(app, '/NetworkDriver.ProgramExternalConnectivity', endpointSchema, () => ({}));
  jsonRoute(app, '/NetworkDriver.RevokeExternalConnectivity', endpointSchema, () => ({}));
  // Node discovery carries nothing OVN needs: the southbound database knows the chassis.
  jsonRoute(app, '/NetworkDriver.DiscoverNew', discoverySchema, () => ({}));
  jsonRoute(app, '/NetworkDriver.DiscoverDelete', discoverySchema, () => ({}));
  jsonRoute(app, '/NetworkDriver.AllocateNetwork', allocateNetworkSchema, (b) => driver.allocateNetwork(b));
  jsonRoute(app, '/NetworkDriver.FreeNetwork', networkSchema, () => ({}));
};
