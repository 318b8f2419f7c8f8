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
  | 'getCapabilities'
  | 'gwAllocCheck'
  | 'createNetwork'
  | 'deleteNetwork'
  | 'createEndpoint'
  | 'endpointOperInfo'
  | 'deleteEndpoint'
  | 'join'
  | 'leave'
  | 'programExternalConnectivity'
  | 'revokeExternalConnectivity'
  | 'allocateNetwork'
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
  // Sent for the container's gateway endpoint only: ports it publishes (-p, -P).
  jsonRoute(app, '/NetworkDriver.ProgramExternalConnectivity', endpointSchema, (b) => driver.programExternalConnectivity(b));
  jsonRoute(app, '/NetworkDriver.RevokeExternalConnectivity', endpointSchema, (b) => driver.revokeExternalConnectivity(b));
  // Node discovery carries nothing OVN needs: the southbound database knows the chassis.
  jsonRoute(app, '/NetworkDriver.DiscoverNew', discoverySchema, () => ({}));
  jsonRoute(app, '/NetworkDriver.DiscoverDelete', discoverySchema, () => ({}));
  jsonRoute(app, '/NetworkDriver.AllocateNetwork', allocateNetworkSchema, (b) => driver.allocateNetwork(b));
  jsonRoute(app, '/NetworkDriver.FreeNetwork', networkSchema, () => ({}));
};
