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
const driver = await startDriver(testDriverConfig(stack, dir), pino({ level: 'info' }));
const call = (m: string, b?: unknown) => callPlugin(driver.address, m, b);
try {
  const id = hex(32);
  console.log(await call('NetworkDriver.CreateNetwork', { NetworkID: id, Options: { 'com.docker.network.generic': { 'ovn.gateway': 'docker' } }, IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.160.0.0/24', Gateway: '10.160.0.1/24', AuxAddresses: { spare: '10.160.0.2/24' } }], IPv6Data: [] }));
  await new Promise((r) => setTimeout(r, 3000));
  console.log(JSON.stringify(await stack.nbctl('--bare', '--columns=external_ids', 'find', 'Address_Set', `name=docker_ports_${id}`)));
  console.log(await stack.nbctl('list', 'Logical_Switch'));
} finally {
  await driver.close(); await stack.stop();
}
