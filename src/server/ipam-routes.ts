import type { FastifyPluginAsync } from 'fastify';
import type { IpamDriver } from '../driver/ipam-driver.js';
import { releaseAddressSchema, releasePoolSchema, requestAddressSchema, requestPoolSchema } from '../protocol/ipam-driver.js';
import { jsonRoute } from './json-route.js';

export type IpamDriverMethods = Pick<
  IpamDriver,
  'getCapabilities' | 'getDefaultAddressSpaces' | 'requestPool' | 'releasePool' | 'requestAddress' | 'releaseAddress'
>;

/** /IpamDriver.*: libnetwork's remote IPAM driver API. */
export const ipamRoutes: FastifyPluginAsync<{ ipam: IpamDriverMethods }> = async (app, { ipam }) => {
  // The engine sends these with an empty body: any body is ignored.
  app.post('/IpamDriver.GetCapabilities', async () => ipam.getCapabilities());
  app.post('/IpamDriver.GetDefaultAddressSpaces', async () => ipam.getDefaultAddressSpaces());

  jsonRoute(app, '/IpamDriver.RequestPool', requestPoolSchema, (b) => ipam.requestPool(b));
  jsonRoute(app, '/IpamDriver.ReleasePool', releasePoolSchema, (b) => ipam.releasePool(b));
  jsonRoute(app, '/IpamDriver.RequestAddress', requestAddressSchema, (b) => ipam.requestAddress(b));
  jsonRoute(app, '/IpamDriver.ReleaseAddress', releaseAddressSchema, (b) => ipam.releaseAddress(b));
};
