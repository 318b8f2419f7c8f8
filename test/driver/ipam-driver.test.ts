/**
 * The IPAM driver against a real OVN NB (in a single-chassis stack), called
 * over the plugin socket as dockerd calls it. Two driver instances with
 * their own NB connections stand in for two hosts allocating at once.
 */
import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { startOvnStack, type OvnStack } from '../harness/ovn-stack.js';
import { callPlugin } from '../harness/plugin-client.js';
import { startDriver, type RunningDriver } from '../../src/service.js';
import type { DriverConfig } from '../../src/config.js';
import { testDriverConfig } from '../harness/driver-config.js';

let stack: OvnStack;
let dir: string;
let hostA: RunningDriver;
let hostB: RunningDriver;

// Both instances run on the harness's one chassis, so warm ports (test/warm/warm-pool.test.ts) are off: this is about allocation alone.
const config = (overrides: Partial<DriverConfig> = {}) => testDriverConfig(stack, dir, { warmPorts: 0, ...overrides });

t.before(async () => {
  stack = await startOvnStack();
  dir = await mkdtemp(path.join(os.tmpdir(), 'ovn-test-ipam-'));
  hostA = await startDriver(config(), pino({ level: 'warn' }));
  hostB = await startDriver(config(), pino({ level: 'warn' }));
});
t.teardown(async () => {
  await hostA?.close();
  await hostB?.close();
  await stack?.stop();
  await rm(dir, { recursive: true, force: true });
});

const ipam = (host: RunningDriver, method: string, body?: unknown) => callPlugin(host.address, `IpamDriver.${method}`, body);

async function requestPool(host: RunningDriver, pool: string, extra: Record<string, unknown> = {}): Promise<string> {
  const reply = await ipam(host, 'RequestPool', { AddressSpace: 'ovn', Pool: pool, SubPool: '', Options: {}, V6: false, ...extra });
  if (reply.status !== 200) throw new Error(`RequestPool: ${JSON.stringify(reply.body)}`);
  t.equal(reply.body.Pool, pool);
  return String(reply.body.PoolID);
}

async function address(host: RunningDriver, poolId: string, wanted = '', options: Record<string, string> | null = null) {
  return ipam(host, 'RequestAddress', { PoolID: poolId, Address: wanted, Options: options });
}

async function addressSets(): Promise<string> {
  return stack.nbctl('--bare', '--columns=name', 'list', 'Address_Set');
}

t.test('handshake: both driver types, one address space', async (t) => {
  t.same((await callPlugin(hostA.address, 'Plugin.Activate')).body, { Implements: ['NetworkDriver', 'IpamDriver'] });
  t.same((await ipam(hostA, 'GetCapabilities')).body, { RequiresMACAddress: false, RequiresRequestReplay: false });
  t.same((await ipam(hostA, 'GetDefaultAddressSpaces')).body, { LocalDefaultAddressSpace: 'ovn', GlobalDefaultAddressSpace: 'ovn' });
});

t.test('two hosts share a pool: one gateway, aux shared, 40 concurrent requests get 40 distinct addresses', async (t) => {
  const poolA = await requestPool(hostA, '10.60.0.0/24');
  const poolB = await requestPool(hostB, '10.60.0.0/24');
  t.not(poolA, poolB, 'each host holds its own lease on the pool');
  t.match(await addressSets(), 'docker_pool_10.60.0.0_24', 'the pool is an Address_Set in NB');

  const gwA = await address(hostA, poolA, '', { RequestAddressType: 'com.docker.network.gateway' });
  const gwB = await address(hostB, poolB, '', { RequestAddressType: 'com.docker.network.gateway' });
  t.equal(gwA.body.Address, '10.60.0.1/24');
  t.equal(gwB.body.Address, '10.60.0.1/24', 'the second host gets the same gateway');
  // --aux-address before the network exists: reserved for everyone, on both hosts.
  t.equal((await address(hostA, poolA, '10.60.0.250')).body.Address, '10.60.0.250/24');
  t.equal((await address(hostB, poolB, '10.60.0.250')).status, 200, 'aux address on the second host too');

  // The networks now exist on both hosts; from here on explicit addresses are exclusive.
  for (const [host, id] of [[hostA, randomBytes(32).toString('hex')], [hostB, randomBytes(32).toString('hex')]] as const) {
    const reply = await callPlugin(host.address, 'NetworkDriver.CreateNetwork', {
      NetworkID: id,
      Options: {},
      IPv4Data: [{ AddressSpace: 'ovn', Pool: '10.60.0.0/24', Gateway: '10.60.0.1/24' }],
      IPv6Data: [],
    });
    t.equal(reply.status, 200, JSON.stringify(reply.body));
  }
  const switches = (await stack.nbctl('--bare', '--columns=name', 'list', 'Logical_Switch')).split('\n').filter((n) => n.includes('10.60.0.0'));
  t.same(switches, ['docker_pool_10.60.0.0_24'], 'both networks attached to one logical switch');

  const replies = await Promise.all(
    Array.from({ length: 40 }, (_, i) => (i % 2 ? address(hostA, poolA) : address(hostB, poolB))),
  );
  t.ok(replies.every((r) => r.status === 200), 'all 40 allocated');
  const addrs = replies.map((r) => String(r.body.Address));
  t.equal(new Set(addrs).size, 40, 'no address handed out twice');
  t.notOk(addrs.some((a) => /\.(0|1|250|255)\/24$/.test(a)), 'network, gateway, aux and broadcast never handed out');

  const fixed = await address(hostA, poolA, '10.60.0.200');
  t.equal(fixed.body.Address, '10.60.0.200/24', '--ip honored');
  const taken = await address(hostB, poolB, '10.60.0.200');
  t.equal(taken.status, 409);
  t.match(String(taken.body.Err), /10\.60\.0\.200 is already in use/);
  t.equal((await address(hostA, poolA, '10.60.0.201')).status, 200);
  t.equal((await address(hostA, poolA, '10.60.0.201')).status, 409, 'the same host cannot take a held --ip twice either');
  const outside = await address(hostB, poolB, '10.61.0.5');
  t.equal(outside.status, 400);
  t.match(String(outside.body.Err), /not in pool/);

  // Released addresses come back (by the host that holds them); the gateway survives one host's release.
  const lastOctet = (a: string) => Number(a.split('/')[0]!.split('.')[3]);
  const first = [...addrs].sort((a, b) => lastOctet(a) - lastOctet(b))[0]!;
  t.equal(first, '10.60.0.2/24', 'allocation starts at the lowest free address');
  const [holder, holderPool] = addrs.indexOf(first) % 2 ? [hostA, poolA] : [hostB, poolB];
  t.equal((await ipam(holder, 'ReleaseAddress', { PoolID: holderPool, Address: first.split('/')[0] })).status, 200);
  t.equal((await ipam(hostA, 'ReleaseAddress', { PoolID: poolA, Address: '10.60.0.1' })).status, 200);
  const again = await address(hostB, poolB);
  t.equal(again.body.Address, '10.60.0.2/24', 'lowest free address reused');
  t.equal((await address(hostB, poolB, '10.60.0.1')).status, 409, 'gateway still reserved for the other host');

  t.equal((await ipam(hostA, 'ReleasePool', { PoolID: poolA })).status, 200);
  t.match(await addressSets(), 'docker_pool_10.60.0.0_24', 'pool stays while host B uses it');
  t.equal((await ipam(hostB, 'ReleasePool', { PoolID: poolB })).status, 200);
  t.notMatch(await addressSets(), 'docker_pool_10.60.0.0_24', 'the last release deletes the pool');
});

t.test('a network removed on one host leaves the shared switch to the other', async (t) => {
  const ids = [randomBytes(32).toString('hex'), randomBytes(32).toString('hex')];
  const pools = [await requestPool(hostA, '10.62.0.0/24'), await requestPool(hostB, '10.62.0.0/24')];
  for (const [i, host] of [hostA, hostB].entries()) {
    await callPlugin(host.address, 'NetworkDriver.CreateNetwork', {
      NetworkID: ids[i],
      Options: {},
      IPv4Data: [{ AddressSpace: 'ovn', Pool: '10.62.0.0/24', Gateway: '10.62.0.1/24' }],
      IPv6Data: [],
    });
  }
  const ep = randomBytes(32).toString('hex');
  const created = await callPlugin(hostA.address, 'NetworkDriver.CreateEndpoint', {
    NetworkID: ids[0],
    EndpointID: ep,
    Interface: { Address: '10.62.0.5/24', AddressIPv6: '', MacAddress: '' },
    Options: {},
  });
  t.equal(created.status, 200);
  t.equal((await callPlugin(hostB.address, 'NetworkDriver.DeleteNetwork', { NetworkID: ids[1] })).status, 200);
  const ports = await stack.nbctl('--bare', '--columns=ports', 'find', 'Logical_Switch', 'name=docker_pool_10.62.0.0_24');
  t.ok(ports.trim(), "host A's switch and port survive host B's network rm");
  t.ok(hostA.driver && (await callPlugin(hostA.address, 'NetworkDriver.EndpointOperInfo', { NetworkID: ids[0], EndpointID: ep })).body.Value);
  await callPlugin(hostA.address, 'NetworkDriver.DeleteEndpoint', { NetworkID: ids[0], EndpointID: ep });
  await callPlugin(hostA.address, 'NetworkDriver.DeleteNetwork', { NetworkID: ids[0] });
  t.notMatch(await stack.nbctl('--bare', '--columns=name', 'list', 'Logical_Switch'), 'docker_pool_10.62.0.0_24', 'last one out deletes it');
  for (const [i, host] of [hostA, hostB].entries()) await ipam(host, 'ReleasePool', { PoolID: pools[i] });
});

t.test('pools without --subnet, ranges, and refusals', async (t) => {
  const auto1 = await ipam(hostA, 'RequestPool', { AddressSpace: 'ovn', Pool: '', SubPool: '', Options: null, V6: false });
  const auto2 = await ipam(hostA, 'RequestPool', { AddressSpace: 'ovn', Pool: '', SubPool: '', Options: null, V6: false });
  t.equal(auto1.status, 200);
  t.not(auto1.body.Pool, auto2.body.Pool, 'each request without --subnet gets a fresh pool');

  const ranged = await ipam(hostA, 'RequestPool', { AddressSpace: 'ovn', Pool: '10.63.0.0/16', SubPool: '10.63.5.0/24', Options: {}, V6: false });
  t.equal(ranged.status, 200);
  const inRange = await address(hostA, String(ranged.body.PoolID));
  t.equal(inRange.body.Address, '10.63.5.1/16', 'addresses come from --ip-range');

  const v6 = await ipam(hostA, 'RequestPool', { AddressSpace: 'ovn', Pool: 'fd63::/64', SubPool: '', Options: {}, V6: true });
  t.equal(v6.status, 200);
  t.equal((await address(hostA, String(v6.body.PoolID), '', { RequestAddressType: 'com.docker.network.gateway' })).body.Address, 'fd63::1/64');
  t.equal((await address(hostA, String(v6.body.PoolID))).body.Address, 'fd63::2/64');

  const refusals: [string, unknown, RegExp][] = [
    ['RequestPool', { AddressSpace: 'elsewhere', Pool: '10.64.0.0/24' }, /unknown address space/],
    ['RequestPool', { AddressSpace: 'ovn', Pool: '10.64.0.0/24', SubPool: '10.65.0.0/24' }, /not inside the pool/],
    ['RequestPool', { AddressSpace: 'ovn', Pool: '10.63.0.0/16', SubPool: '' }, /already in use with --ip-range/],
    ['RequestAddress', { PoolID: 'nonsense' }, /invalid PoolID/],
    ['RequestAddress', { PoolID: 'docker_pool_10.99.0.0_24/0123456789ab' }, /does not exist/],
    // A swarm manager's allocator: its gateway request, then its tasks'.
    ['RequestAddress', { PoolID: String(ranged.body.PoolID), Options: { RequestAddressType: 'com.docker.network.gateway', 'com.docker.network.ipam.serial': 'true' } }, /does not serve swarm networks/],
    ['RequestAddress', { PoolID: String(ranged.body.PoolID), Address: '', Options: { 'com.docker.network.ipam.serial': 'true' } }, /without --ipam-driver/],
    ['ReleasePool', {}, /PoolID/],
  ];
  for (const [method, body, err] of refusals) {
    const reply = await ipam(hostA, method, body);
    t.not(reply.status, 200, `${method} ${JSON.stringify(body)} refused`);
    t.match(String(reply.body.Err), err, String(reply.body.Err));
  }
  t.equal((await address(hostA, String(ranged.body.PoolID))).body.Address, '10.63.5.2/16', 'the refused requests reserved nothing');
});

/** Who holds an address of a pool in NB (its docker:ip: key), "" when it is free. */
async function holderOf(subnet: string, ip: string): Promise<string> {
  const name = `docker_pool_${subnet.replace('/', '_')}`;
  return (await stack.nbctl('--if-exists', 'get', 'Address_Set', name, `external_ids:"docker:ip:${ip}"`)).trim();
}

t.test('ReleaseAddress checks its PoolID: another pool, an unknown one, a malformed one, an address outside: refused, nothing freed', async (t) => {
  const poolX = await requestPool(hostA, '10.66.0.0/24');
  const poolY = await requestPool(hostA, '10.67.0.0/24');
  t.equal((await address(hostA, poolX, '', { RequestAddressType: 'com.docker.network.gateway' })).status, 200);
  t.equal((await address(hostA, poolX)).body.Address, '10.66.0.2/24');
  t.equal((await address(hostA, poolY)).body.Address, '10.67.0.1/24');
  const heldX = await holderOf('10.66.0.0/24', '10.66.0.2');
  const heldY = await holderOf('10.67.0.0/24', '10.67.0.1');
  t.ok(heldX && heldY, 'both reserved');

  const refusals: [string, Record<string, unknown>, number, RegExp][] = [
    ["another pool's PoolID", { PoolID: poolY, Address: '10.66.0.2' }, 400, /address 10\.66\.0\.2 is not in pool 10\.67\.0\.0\/24/],
    ['an unknown pool', { PoolID: 'docker_pool_10.99.0.0_24/0123456789ab', Address: '10.66.0.2' }, 404, /does not exist/],
    ['the right pool with a token nobody was given', { PoolID: 'docker_pool_10.66.0.0_24/0123456789ab', Address: '10.66.0.2' }, 404, /was released/],
    ['a malformed PoolID', { PoolID: 'docker_pool_10.66.0.0_24', Address: '10.66.0.2' }, 400, /invalid PoolID/],
    ['an address outside the pool', { PoolID: poolX, Address: '10.67.0.1' }, 400, /address 10\.67\.0\.1 is not in pool 10\.66\.0\.0\/24/],
    ['not an address', { PoolID: poolX, Address: '10.66.0.256' }, 400, /invalid address/],
  ];
  for (const [what, body, status, err] of refusals) {
    const reply = await ipam(hostA, 'ReleaseAddress', body);
    t.equal(reply.status, status, `${what}: ${String(reply.body.Err)}`);
    t.match(String(reply.body.Err), err);
  }
  t.equal(await holderOf('10.66.0.0/24', '10.66.0.2'), heldX, '10.66.0.2 still held');
  t.equal(await holderOf('10.67.0.0/24', '10.67.0.1'), heldY, '10.67.0.1 still held');

  // The right PoolID frees it; the same release again is a no-op; the gateway stays; outside --ip-range is no error.
  t.equal((await ipam(hostA, 'ReleaseAddress', { PoolID: poolX, Address: '10.66.0.2' })).status, 200);
  t.equal(await holderOf('10.66.0.0/24', '10.66.0.2'), '', 'freed');
  t.equal((await ipam(hostA, 'ReleaseAddress', { PoolID: poolX, Address: '10.66.0.2' })).status, 200, 'releasing a free address is idempotent');
  t.equal((await ipam(hostA, 'ReleaseAddress', { PoolID: poolX, Address: '10.66.0.1' })).status, 200);
  t.equal(await holderOf('10.66.0.0/24', '10.66.0.1'), 'gateway', 'the gateway lives as long as the pool');
  for (const id of [poolX, poolY]) t.equal((await ipam(hostA, 'ReleasePool', { PoolID: id })).status, 200);
});

t.test('a ReleaseAddress retried after someone else reserved the address leaves it to the new holder', async (t) => {
  const poolA = await requestPool(hostA, '10.68.0.0/24');
  const poolB = await requestPool(hostB, '10.68.0.0/24');
  t.equal((await address(hostA, poolA, '', { RequestAddressType: 'com.docker.network.gateway' })).status, 200);
  t.equal((await address(hostA, poolA)).body.Address, '10.68.0.2/24');
  t.equal((await ipam(hostA, 'ReleaseAddress', { PoolID: poolA, Address: '10.68.0.2' })).status, 200);
  // Host B's next request gets the lowest free address: the one just released.
  t.equal((await address(hostB, poolB)).body.Address, '10.68.0.2/24');
  const newHolder = await holderOf('10.68.0.0/24', '10.68.0.2');
  t.ok(newHolder, "host B's reservation is in NB");
  // Host A's release again, as after a lost reply: success (its address is free), and B's reservation stays.
  t.equal((await ipam(hostA, 'ReleaseAddress', { PoolID: poolA, Address: '10.68.0.2' })).status, 200);
  t.equal(await holderOf('10.68.0.0/24', '10.68.0.2'), newHolder, 'the new holder keeps the address');
  const taken = await address(hostA, poolA, '10.68.0.2');
  t.not(taken.status, 200, 'nobody else can have it');
  for (const [host, id] of [[hostA, poolA], [hostB, poolB]] as const) t.equal((await ipam(host, 'ReleasePool', { PoolID: id })).status, 200);
});
