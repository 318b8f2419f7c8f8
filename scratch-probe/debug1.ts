import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { startOvnStack } from '../test/harness/ovn-stack.js';
import { callPlugin } from '../test/harness/plugin-client.js';
import { startDriver } from '../src/service.js';
import { testDriverConfig } from '../test/harness/driver-config.js';
const hex = (n: number) => randomBytes(n).toString('hex');
const stack = await startOvnStack();
const dir = await mkdtemp(path.join(os.tmpdir(), 'dbg-'));
const driver = await startDriver(testDriverConfig(stack, dir), pino({ level: 'debug' }));
const call = (m: string, b?: unknown) => callPlugin(driver.address, m, b);
try {
  const id = hex(32);
  console.log(await call('NetworkDriver.CreateNetwork', { NetworkID: id, Options: {}, IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.71.0.0/24', Gateway: '10.71.0.1/24' }], IPv6Data: [] }));
  await new Promise((r) => setTimeout(r, 3000));
  console.log(await stack.nbctl('list', 'Address_Set'));
  const ep = hex(32);
  console.log(await call('NetworkDriver.CreateEndpoint', { NetworkID: id, EndpointID: ep, Interface: { Address: '10.71.0.5/24', AddressIPv6: '', MacAddress: '' }, Options: {} }));
} finally {
  await driver.close(); await stack.stop();
}
