/**
 * The driver against a real single-chassis OVN (NB, SB, northd, OVS with
 * the userspace datapath, ovn-controller), driven over its unix socket
 * exactly as dockerd drives it. Containers are stood in for by network
 * namespaces this test makes; the engine itself is in test/e2e.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { startOvnStack, type OvnStack } from '../harness/ovn-stack.js';
import { callPlugin } from '../harness/plugin-client.js';
import { createNetns, deleteNetns, linkExists, moveIntoNetns, ping, tcpEcho, tcpRoundTrip } from '../harness/netns.js';
import { run, waitFor } from '../harness/process.js';
import { startDriver, type RunningDriver } from '../../src/service.js';
import { cleanupHost } from '../../src/cleanup.js';
import type { DriverConfig } from '../../src/config.js';
import { testDriverConfig } from '../harness/driver-config.js';
import { hostIfName, peerIfName } from '../../src/host/names.js';
import { OvsdbClient } from '../../src/ovsdb/index.js';
import { NB_INDEXES, NB_TABLES } from '../../src/ovn/keys.js';
import { OvnNetworks } from '../../src/ovn/networks.js';
import { PortReadiness } from '../../src/ovn/port-readiness.js';

let stack: OvnStack;
let dir: string;
let driver: RunningDriver;
const namespaces: string[] = [];
const endpointsMade: string[] = [];

const hex = (n: number) => randomBytes(n).toString('hex');

const config = (overrides: Partial<DriverConfig> = {}) => testDriverConfig(stack, dir, overrides);

const call = (method: string, body?: unknown) => callPlugin(driver.address, method, body);

t.before(async () => {
  stack = await startOvnStack();
  dir = await mkdtemp(path.join(os.tmpdir(), 'ovn-test-plugins-'));
  // Ports made for endpoints, as without warm ports (those have a test of their own).
  driver = await startDriver(config({ warmPorts: 0 }), pino({ level: 'warn' }));
});

t.teardown(async () => {
  for (const ns of namespaces) await deleteNetns(ns);
  for (const id of endpointsMade) {
    await run('ip', ['link', 'del', hostIfName(id)]).catch(() => undefined);
  }
  await driver?.close();
  await stack?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function nbSwitches(): Promise<string[]> {
  const out = await stack.nbctl('--bare', '--columns=name', 'list', 'Logical_Switch');
  return out.split('\n').filter(Boolean);
}

/** Ports of a network's endpoints (the switch also holds the gateway's localport). */
async function endpointPorts(networkId: string): Promise<number> {
  const out = await stack.nbctl('--bare', '--columns=name', 'find', 'Logical_Switch_Port', `external_ids:docker\\:network-id=${networkId}`);
  return out.split('\n').filter(Boolean).length;
}

async function createNetwork(subnet: string, options: Record<string, string> = {}): Promise<string> {
  const id = hex(32);
  const [a, b, c] = subnet.split('.');
  const reply = await call('NetworkDriver.CreateNetwork', {
    NetworkID: id,
    Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': options },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: `${subnet}`, Gateway: `${a}.${b}.${c}.1/24` }],
    IPv6Data: [],
  });
  if (reply.status !== 200) throw new Error(`CreateNetwork: ${JSON.stringify(reply.body)}`);
  return id;
}

async function createEndpoint(networkId: string, address: string, mac = ''): Promise<{ id: string; mac: string }> {
  const id = hex(32);
  endpointsMade.push(id);
  const reply = await call('NetworkDriver.CreateEndpoint', {
    NetworkID: networkId,
    EndpointID: id,
    Interface: { Address: address, AddressIPv6: '', MacAddress: mac },
    Options: {},
  });
  if (reply.status !== 200) throw new Error(`CreateEndpoint: ${JSON.stringify(reply.body)}`);
  const iface = reply.body.Interface as { MacAddress?: string } | undefined;
  return { id, mac: mac || iface?.MacAddress || '' };
}

async function join(networkId: string, endpointId: string): Promise<string> {
  const reply = await call('NetworkDriver.Join', {
    NetworkID: networkId,
    EndpointID: endpointId,
    SandboxKey: `/var/run/docker/netns/${endpointId.slice(0, 12)}`,
    Options: {},
  });
  if (reply.status !== 200) throw new Error(`Join: ${JSON.stringify(reply.body)}`);
  const name = reply.body.InterfaceName as { SrcName: string; DstPrefix: string };
  return name.SrcName;
}

t.test('handshake: Activate and GetCapabilities; the socket is root-only', async (t) => {
  const activate = await call('Plugin.Activate');
  t.same(activate, { status: 200, body: { Implements: ['NetworkDriver', 'IpamDriver'] } });
  const caps = await call('NetworkDriver.GetCapabilities');
  t.equal(caps.status, 200);
  t.equal(caps.body.Scope, 'local');
  const mode = (await stat(driver.address)).mode & 0o777;
  t.equal(mode, 0o600, 'socket mode 0600');
});

t.test('a network is a logical switch; endpoints are ports with addresses and port security', async (t) => {
  const networkId = await createNetwork('10.71.0.0/24', { 'com.docker.network.driver.mtu': '1400', foo: 'bar' });
  const again = await createNetwork('10.72.0.0/24');
  t.ok(again);
  const ids = await stack.nbctl('--bare', '--columns=external_ids', 'find', 'Logical_Switch', `name=${networkId}`);
  t.match(ids, /docker:ipv4-subnets=\\?"?10\.71\.0\.0\/24/);
  t.match(ids, /docker:mtu=\\?"?1400/);
  t.match(ids, /docker:ipv4-gateways=\\?"?10\.71\.0\.1/);

  // Idempotent: the engine may retry.
  const retry = await call('NetworkDriver.CreateNetwork', {
    NetworkID: networkId,
    Options: {},
    IPv4Data: [{ AddressSpace: '', Pool: '10.71.0.0/24', Gateway: '10.71.0.1/24' }],
    IPv6Data: [],
  });
  t.equal(retry.status, 200);
  t.equal((await nbSwitches()).filter((n) => n === networkId).length, 1, 'one switch after a retry');

  const ep = await createEndpoint(networkId, '10.71.0.2/24');
  t.equal(ep.mac, '0a:58:0a:47:00:02', 'MAC derived from the IPv4 address, returned to Docker');
  const addresses = (await stack.nbctl('get', 'Logical_Switch_Port', ep.id, 'addresses')).trim();
  const security = (await stack.nbctl('get', 'Logical_Switch_Port', ep.id, 'port_security')).trim();
  t.equal(addresses, '["0a:58:0a:47:00:02 10.71.0.2"]');
  t.equal(security, addresses, 'port security locks the port to its address');
  const chassis = (await stack.nbctl('get', 'Logical_Switch_Port', ep.id, 'options:requested-chassis')).trim();
  t.equal(chassis.replace(/"/g, ''), stack.systemId, 'pinned to this chassis');

  const withMac = await createEndpoint(networkId, '10.71.0.3/24', '02:42:0a:47:00:03');
  t.equal(withMac.mac, '02:42:0a:47:00:03', "Docker's MAC is used");
  // Retried CreateEndpoint answers the same.
  const retryEp = await call('NetworkDriver.CreateEndpoint', {
    NetworkID: networkId,
    EndpointID: ep.id,
    Interface: { Address: '10.71.0.2/24', AddressIPv6: '', MacAddress: '' },
    Options: {},
  });
  t.same(retryEp.body, { Interface: { MacAddress: '0a:58:0a:47:00:02' } });
});

t.test('two joined endpoints reach each other by ping and TCP; leave and delete clean up', async (t) => {
  const networkId = await createNetwork('10.73.0.0/24', { 'com.docker.network.driver.mtu': '1400' });
  const a = await createEndpoint(networkId, '10.73.0.2/24');
  const b = await createEndpoint(networkId, '10.73.0.3/24');
  const [srcA, srcB] = await Promise.all([join(networkId, a.id), join(networkId, b.id)]);
  t.equal(srcA, peerIfName(a.id));
  t.equal((await stack.nbctl('get', 'Logical_Switch_Port', a.id, 'up')).trim(), 'true', 'Join returned after the port came up');

  const link = JSON.parse((await run('ip', ['-j', '-d', 'link', 'show', srcA])).stdout) as { mtu: number; address: string }[];
  t.equal(link[0]?.mtu, 1400, 'MTU of the network');
  t.equal(link[0]?.address, a.mac, 'container side carries the port MAC');
  const ifaceId = (await stack.vsctl('get', 'Interface', hostIfName(a.id), 'external_ids:iface-id')).trim();
  t.equal(ifaceId.replace(/"/g, ''), a.id, 'host side plugged with iface-id = port name');

  // Stand in for Docker: move the container ends into namespaces.
  const nsA = await createNetns();
  const nsB = await createNetns();
  namespaces.push(nsA, nsB);
  await moveIntoNetns(srcA, nsA, 'eth0', '10.73.0.2/24');
  await moveIntoNetns(srcB, nsB, 'eth0', '10.73.0.3/24');
  t.ok(await ping(nsA, '10.73.0.3'), 'ping A -> B');
  const echo = await tcpEcho(nsB, '10.73.0.3', 7001);
  try {
    t.equal(await tcpRoundTrip(nsA, '10.73.0.3', 7001, 'tcp over ovn'), 'tcp over ovn', 'TCP A -> B (tx offload handled)');
  } finally {
    await echo.stop();
  }

  // Port security: A spoofing another address gets nothing through.
  await run('ip', ['-n', nsA, 'addr', 'add', '10.73.0.99/24', 'dev', 'eth0']);
  const spoofed = await run('ip', ['netns', 'exec', nsA, 'ping', '-c1', '-W1', '-I', '10.73.0.99', '10.73.0.3']).then(
    () => true,
    () => false,
  );
  t.notOk(spoofed, 'a spoofed source address is dropped');

  for (const ep of [a, b]) {
    t.equal((await call('NetworkDriver.Leave', { NetworkID: networkId, EndpointID: ep.id })).status, 200);
    t.equal((await call('NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: ep.id })).status, 200);
    t.equal((await call('NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: ep.id })).status, 200, 'twice is fine');
  }
  t.equal(await endpointPorts(networkId), 0, 'no endpoint ports left');
  // Leave's host teardown finishes after Leave has answered.
  await waitFor(
    async () => {
      const ports = await stack.vsctl('list-ports', 'br-int');
      const gone = await run('ip', ['link', 'show', hostIfName(b.id)]).then(() => false, () => true);
      return (!ports.includes(hostIfName(a.id)) && !ports.includes(hostIfName(b.id)) && gone) || undefined;
    },
    { timeoutMs: 5000, what: 'host side of both endpoints removed' },
  );
  t.pass('nothing left on br-int, host veths gone');

  t.equal((await call('NetworkDriver.DeleteNetwork', { NetworkID: networkId })).status, 200);
  t.notOk((await nbSwitches()).includes(networkId), 'switch deleted');
  t.equal((await call('NetworkDriver.DeleteNetwork', { NetworkID: networkId })).status, 200, 'twice is fine');
});

t.test('egress: this host is the gateway unless the network asks for docker_gwbridge or the container publishes ports', async (t) => {
  const joinReply = async (networkId: string, endpointId: string, options: Record<string, unknown>) => {
    const reply = await call('NetworkDriver.Join', { NetworkID: networkId, EndpointID: endpointId, SandboxKey: '', Options: options });
    t.equal(reply.status, 200, JSON.stringify(reply.body));
    return reply.body as { Gateway?: string; DisableGatewayService?: boolean };
  };
  const routed = await createNetwork('10.74.0.0/24');
  const gatewayIf = (await stack.vsctl('--bare', '--columns=name', 'find', 'Interface', 'external_ids:iface-id=' + routed + '-gw')).trim();
  t.match(gatewayIf, /^ovg[0-9a-f]{12}$/, "the gateway's localport is bound on this host by CreateNetwork");
  t.match((await run('ip', ['-o', 'addr', 'show', 'dev', gatewayIf])).stdout, /inet 10\.74\.0\.1\/24/, 'carrying the gateway address');
  t.equal(await readFile(`/proc/sys/net/ipv6/conf/${gatewayIf}/disable_ipv6`, 'utf8'), '1\n', 'and no IPv6 (no router advertisements, no autoconfiguration) on an IPv4 network');

  const plain = await createEndpoint(routed, '10.74.0.2/24');
  const reply = await joinReply(routed, plain.id, { 'com.docker.network.portmap': [], 'com.docker.network.endpoint.exposedports': [] });
  t.equal(reply.Gateway, '10.74.0.1', 'the default route goes through OVN to this host');
  t.equal(reply.DisableGatewayService, true, 'no docker_gwbridge endpoint');

  // -p 8080:80 with --masquerade false (the firewall is not ours, so nothing publishes here): docker_gwbridge stays.
  const publishing = await createEndpoint(routed, '10.74.0.3/24');
  const portmap = [{ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 8080, HostPortEnd: 8080 }];
  const published = await joinReply(routed, publishing.id, { 'com.docker.network.portmap': portmap });
  t.equal(published.Gateway, undefined, 'a container publishing ports gets no gateway from the driver');
  t.equal(published.DisableGatewayService, undefined, 'so Docker gives it docker_gwbridge');

  const bridged = await createNetwork('10.75.0.0/24', { 'ovn.gateway': 'docker' });
  t.equal((await stack.vsctl('--bare', '--columns=name', 'find', 'Interface', 'external_ids:iface-id=' + bridged + '-gw')).trim(), '', 'no gateway port for -o ovn.gateway=docker');
  const viaDocker = await createEndpoint(bridged, '10.75.0.2/24');
  t.same(Object.keys(await joinReply(bridged, viaDocker.id, {})), ['InterfaceName'], 'only the interface: Docker adds docker_gwbridge');

  for (const [networkId, ep] of [[routed, plain], [routed, publishing], [bridged, viaDocker]] as const) {
    await call('NetworkDriver.Leave', { NetworkID: networkId, EndpointID: ep.id });
    await call('NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: ep.id });
  }
  for (const networkId of [routed, bridged]) t.equal((await call('NetworkDriver.DeleteNetwork', { NetworkID: networkId })).status, 200);
  t.notMatch(await stack.vsctl('list-ports', 'br-int'), gatewayIf, 'the gateway port goes with its network');
  t.notOk(await linkExists(gatewayIf), 'and so does its interface');
});

t.test("a subnet this host already routes elsewhere does not get the host as its gateway", async (t) => {
  // Stands in for a LAN or VPN route of the host: a veth pair of our own (this kernel has no dummy links), removed by name.
  const dummy = `dm${hex(4)}`;
  await run('ip', ['link', 'add', dummy, 'type', 'veth', 'peer', 'name', `${dummy}p`]);
  t.teardown(() => run('ip', ['link', 'del', dummy]).then(() => undefined, () => undefined));
  await run('ip', ['addr', 'add', '10.79.0.200/24', 'dev', dummy]);
  await run('ip', ['link', 'set', dummy, 'up']);

  const networkId = await createNetwork('10.79.0.0/24');
  t.equal((await stack.vsctl('--bare', '--columns=name', 'find', 'Interface', `external_ids:iface-id=${networkId}-gw`)).trim(), '', 'no gateway port');
  const ep = await createEndpoint(networkId, '10.79.0.2/24');
  const joined = await call('NetworkDriver.Join', { NetworkID: networkId, EndpointID: ep.id, SandboxKey: '', Options: {} });
  t.same(Object.keys(joined.body), ['InterfaceName'], "by default the network gets Docker's docker_gwbridge instead");
  t.match((await stack.nbctl('get', 'Logical_Switch', networkId, 'external_ids:docker\\:options')).replace(/\\/g, ''), /"ovn.gateway":"docker"/, 'recorded in the network');

  const explicit = await call('NetworkDriver.CreateNetwork', {
    NetworkID: hex(32),
    Options: { 'com.docker.network.generic': { 'ovn.gateway': 'host' } },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.79.0.0/24', Gateway: '10.79.0.1/24' }],
    IPv6Data: [],
  });
  t.equal(explicit.status, 409);
  t.match(String(explicit.body.Err), new RegExp(`subnet 10\\.79\\.0\\.0/24 overlaps this host's route to 10\\.79\\.0\\.0/24 \\(dev ${dummy}\\)`), 'asked for explicitly, it is refused');
  await call('NetworkDriver.Leave', { NetworkID: networkId, EndpointID: ep.id });
  await call('NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: ep.id });
  t.equal((await call('NetworkDriver.DeleteNetwork', { NetworkID: networkId })).status, 200);
});

t.test('dual stack: IPv6 subnets, addresses and port security are carried; ping6 passes', async (t) => {
  const networkId = hex(32);
  const created = await call('NetworkDriver.CreateNetwork', {
    NetworkID: networkId,
    Options: { 'com.docker.network.enable_ipv6': true, 'com.docker.network.generic': {} },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.78.0.0/24', Gateway: '10.78.0.1/24' }],
    IPv6Data: [{ AddressSpace: 'LocalDefault', Pool: 'fd78::/64', Gateway: 'fd78::1/64' }],
  });
  t.equal(created.status, 200, JSON.stringify(created.body));
  const ids = await stack.nbctl('--bare', '--columns=external_ids', 'find', 'Logical_Switch', `name=${networkId}`);
  t.match(ids, /docker:ipv6-subnets=\\?"?fd78::\/64/);
  t.match(ids, /docker:ipv6-gateways=\\?"?fd78::1/);

  const eps: { id: string; v6: string; src: string }[] = [];
  for (const n of [2, 3]) {
    const id = hex(32);
    endpointsMade.push(id);
    const reply = await call('NetworkDriver.CreateEndpoint', {
      NetworkID: networkId,
      EndpointID: id,
      Interface: { Address: `10.78.0.${n}/24`, AddressIPv6: `fd78::${n}/64`, MacAddress: '' },
      Options: {},
    });
    t.equal(reply.status, 200, JSON.stringify(reply.body));
    eps.push({ id, v6: `fd78::${n}`, src: await join(networkId, id) });
  }
  const addresses = (await stack.nbctl('get', 'Logical_Switch_Port', eps[0]!.id, 'addresses')).trim();
  t.equal(addresses, '["0a:58:0a:4e:00:02 10.78.0.2 fd78::2"]');
  t.equal((await stack.nbctl('get', 'Logical_Switch_Port', eps[0]!.id, 'port_security')).trim(), addresses);

  const [a, b] = [await createNetns(), await createNetns()];
  namespaces.push(a, b);
  for (const [ns, ep] of [[a, eps[0]!], [b, eps[1]!]] as const) {
    await moveIntoNetns(ep.src, ns, 'eth0', ep.v6.replace('fd78::', '10.78.0.') + '/24');
    await run('ip', ['-n', ns, 'addr', 'add', `${ep.v6}/64`, 'dev', 'eth0', 'nodad']);
  }
  const ping6 = await run('ip', ['netns', 'exec', a, 'ping', '-6', '-c1', '-W3', eps[1]!.v6]).then(
    (r) => r.stdout,
    (e: Error) => e.message,
  );
  t.match(ping6, /1 received/, 'IPv6 between the two endpoints');
  for (const ep of eps) await call('NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: ep.id });
});

t.test('the NB database defaults to external_ids:ovn-nb of the local Open_vSwitch row', async (t) => {
  const cfg = config({ nbRemote: undefined });
  await stack.vsctl('remove', 'Open_vSwitch', '.', 'external_ids', 'ovn-nb');
  await t.rejects(startDriver(cfg, pino({ level: 'silent' })), /external_ids:ovn-nb/, 'a clear error when there is none');
  await stack.vsctl('set', 'Open_vSwitch', '.', `external_ids:ovn-nb="${stack.nbRemote}"`);
  const second = await startDriver(cfg, pino({ level: 'silent' }));
  t.teardown(() => second.close());
  const networkId = await createNetwork('10.79.0.0/24');
  const seen = await second.nb.replica.waitFor(
    () => [...second.nb.replica.rows('Logical_Switch')].find((r) => (r.external_ids as Map<string, string>).has(`docker:network:${networkId}`)),
    { timeoutMs: 5000, what: 'the network in the second driver' },
  );
  t.equal(seen.name, networkId, 'second driver reads the same NB database');
  const caps = await callPlugin(second.address, 'NetworkDriver.GetCapabilities');
  t.equal(caps.status, 200, 'second driver serves');
});

t.test('Join is ready on ovn-installed even while ovn-northd cannot report up', async (t) => {
  const networkId = await createNetwork('10.80.0.0/24');
  const ep = await createEndpoint(networkId, '10.80.0.2/24');
  // The binding must exist first (northd makes it); after that only `up` needs northd.
  await waitFor(async () => (await stack.sbctl('--bare', '--columns=logical_port', 'find', 'Port_Binding', `logical_port=${ep.id}`)).trim() || undefined, {
    timeoutMs: 10_000,
    what: 'the Port_Binding',
  });
  process.kill(stack.pids.northd, 'SIGSTOP');
  try {
    const started = Date.now();
    await join(networkId, ep.id);
    t.ok(Date.now() - started < 10_000, 'Join returned');
    const installed = (await stack.vsctl('get', 'Interface', hostIfName(ep.id), 'external_ids:ovn-installed')).trim();
    t.equal(installed.replace(/"/g, ''), 'true', 'flows installed on this chassis');
    t.not((await stack.nbctl('get', 'Logical_Switch_Port', ep.id, 'up')).trim(), 'true', 'NB up not written while northd is stopped');
  } finally {
    process.kill(stack.pids.northd, 'SIGCONT');
  }
  await call('NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: ep.id });
});

t.test('a Join that times out waiting for OVN says what to check and leaves nothing plugged', async (t) => {
  // No warm ports: this driver's pool would race the endpoint for 10.84.0.2 on a network of Docker's IPAM.
  const impatient = await startDriver(config({ portUpTimeoutMs: 800, warmPorts: 0 }), pino({ level: 'silent' }));
  t.teardown(() => impatient.close());
  const networkId = await createNetwork('10.84.0.0/24');
  const ep = await createEndpoint(networkId, '10.84.0.2/24');
  // The endpoint was made through the first driver: Join on this one must not race its replica.
  await impatient.nb.replica.waitFor(() => [...impatient.nb.replica.rows('Logical_Switch_Port')].find((r) => r.name === ep.id), {
    timeoutMs: 5000,
    what: 'the endpoint in the second driver',
  });
  process.kill(stack.pids.controller, 'SIGSTOP');
  let reply;
  try {
    reply = await callPlugin(impatient.address, 'NetworkDriver.Join', { NetworkID: networkId, EndpointID: ep.id, SandboxKey: '', Options: {} });
  } finally {
    process.kill(stack.pids.controller, 'SIGCONT');
  }
  t.equal(reply.status, 503, `Join refused: ${JSON.stringify(reply.body)}`);
  t.match(String(reply.body.Err), /did not report port .* up within 800 ms: check that ovn-controller runs/);
  t.notMatch(await stack.vsctl('list-ports', 'br-int'), hostIfName(ep.id), 'unplugged again');
  await t.rejects(run('ip', ['link', 'show', hostIfName(ep.id)]), 'veth removed');
  await call('NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: ep.id });
});

t.test('20 endpoints created and joined at once', async (t) => {
  const networkId = await createNetwork('10.74.0.0/24');
  const eps = await Promise.all(Array.from({ length: 20 }, (_, i) => createEndpoint(networkId, `10.74.0.${10 + i}/24`)));
  await Promise.all(eps.map((ep) => join(networkId, ep.id)));
  const up = await stack.nbctl('--bare', '--columns=up', 'find', 'Logical_Switch_Port', `external_ids:docker\\:network-id=${networkId}`);
  t.equal(up.split('\n').filter((l) => l.trim() === 'true').length, 20, 'all 20 up');
  t.equal(new Set(eps.map((e) => e.mac)).size, 20, 'distinct MACs');
  await Promise.all(eps.map((ep) => call('NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: ep.id })));
  t.equal(await endpointPorts(networkId), 0, 'all 20 ports deleted');
});

t.test('bad requests get {"Err"} and change nothing', async (t) => {
  const networkId = await createNetwork('10.75.0.0/24');
  const before = (await nbSwitches()).length;
  const cases: [string, unknown, RegExp][] = [
    ['NetworkDriver.CreateNetwork', { NetworkID: 'x; rm -rf /', IPv4Data: [] }, /NetworkID/],
    ['NetworkDriver.CreateNetwork', { NetworkID: hex(32), IPv4Data: [{ Pool: '10.1.0.0/33' }] }, /Pool|prefix/],
    ['NetworkDriver.CreateNetwork', { NetworkID: hex(32), IPv4Data: [{ Pool: 'fd00::/64' }] }, /IPv4/],
    ['NetworkDriver.CreateNetwork', { NetworkID: hex(32), Options: { 'com.docker.network.generic': { 'com.docker.network.driver.mtu': 'lots' } }, IPv4Data: [] }, /mtu/],
    ['NetworkDriver.CreateNetwork', { NetworkID: hex(32), IPv4Data: [{ Pool: '10.1.0.0/24', Gateway: '10.2.0.1/24' }] }, /outside/],
    ['NetworkDriver.CreateNetwork', {}, /NetworkID/],
    // A swarm network at this driver's default local scope: the engine dropped its --subnet.
    ['NetworkDriver.CreateNetwork', { NetworkID: 'pcbx2x7r838442wgfjaaifv2x', IPv4Data: [{ Pool: '172.17.0.0/16', Gateway: '172.17.0.1/16' }] }, /OVN_DOCKER_SCOPE=global/],
    ['NetworkDriver.CreateEndpoint', { NetworkID: networkId, EndpointID: hex(32), Interface: { Address: '10.99.0.5/24' } }, /not inside/],
    ['NetworkDriver.CreateEndpoint', { NetworkID: networkId, EndpointID: 'zz', Interface: {} }, /EndpointID/],
    ['NetworkDriver.CreateEndpoint', { NetworkID: networkId, EndpointID: hex(32), Interface: { MacAddress: '01:00:5e:00:00:01' } }, /multicast/],
    ['NetworkDriver.CreateEndpoint', { NetworkID: hex(32), EndpointID: hex(32), Interface: {} }, /does not exist/],
    ['NetworkDriver.Join', { NetworkID: networkId, EndpointID: hex(32) }, /does not exist/],
    ['NetworkDriver.NoSuchMethod', {}, /not a method/],
  ];
  for (const [method, body, err] of cases) {
    const reply = await call(method, body);
    t.not(reply.status, 200, `${method} ${JSON.stringify(body).slice(0, 80)} refused`);
    t.match(String(reply.body.Err), err, `clear message: ${String(reply.body.Err)}`);
  }
  const garbage = await callPlugin(driver.address, 'NetworkDriver.CreateNetwork', undefined, '{"NetworkID": ');
  t.equal(garbage.status, 400);
  t.match(String(garbage.body.Err), /not valid JSON/);
  const huge = await callPlugin(driver.address, 'NetworkDriver.CreateNetwork', undefined, JSON.stringify({ NetworkID: hex(32), pad: 'x'.repeat(2 * 1024 * 1024) }));
  t.equal(huge.status, 413, 'oversized body refused');
  t.match(String(huge.body.Err), /large|limit/i);
  t.equal((await nbSwitches()).length, before, 'no switch created by any bad request');
  t.equal(await endpointPorts(networkId), 0, 'no port created by any bad request');
});

t.test('a restarted driver removes what a crash left and serves again', async (t) => {
  const networkId = await createNetwork('10.76.0.0/24');
  const kept = await createEndpoint(networkId, '10.76.0.2/24');
  const orphan = await createEndpoint(networkId, '10.76.0.3/24');
  await join(networkId, kept.id);
  await join(networkId, orphan.id);

  // "Crash": the driver goes away without Leave; meanwhile the orphan's port is deleted in OVN,
  // and the gateway port of a network deleted meanwhile is left behind.
  await driver.close();
  await stack.nbctl('lsp-del', orphan.id);
  const strayGateway = `ovg${hex(6)}`;
  await stack.vsctl(
    'add-port', 'br-int', strayGateway, '--', 'set', 'Interface', strayGateway, 'type=internal',
    'external_ids:docker\\:owner=ovn-docker-driver', 'external_ids:docker\\:role=gateway', `external_ids:docker\\:network-id=${hex(32)}`,
  );
  const gatewayIf = (await stack.vsctl('--bare', '--columns=name', 'find', 'Interface', `external_ids:iface-id=${networkId}-gw`)).trim();
  await stack.vsctl('del-port', 'br-int', gatewayIf);
  driver = await startDriver(config({ warmPorts: 0 }), pino({ level: 'warn' }));

  const ports = await stack.vsctl('list-ports', 'br-int');
  t.notMatch(ports, hostIfName(orphan.id), 'orphan unplugged from br-int');
  await t.rejects(run('ip', ['link', 'show', hostIfName(orphan.id)]), 'orphan veth deleted');
  t.match(ports, hostIfName(kept.id), 'live endpoint kept');
  t.notMatch(ports, strayGateway, "a gateway port whose network is gone is removed");
  t.match(ports, gatewayIf, "the gateway of this host's live network is set up again at start-up");
  t.match((await run('ip', ['-o', 'addr', 'show', 'dev', gatewayIf])).stdout, /inet 10\.76\.0\.1\/24/, 'with its address');
  await run('ip', ['link', 'show', hostIfName(kept.id)]);

  const fresh = await createEndpoint(networkId, '10.76.0.4/24');
  t.equal(await join(networkId, fresh.id), peerIfName(fresh.id), 'new endpoints are served after the restart');
});

t.test('a port deleted while something waits for it to be ready fails the wait at once, not at its timeout', async (t) => {
  const nb = await OvsdbClient.connect({ remote: stack.nbRemote, database: 'OVN_Northbound', tables: NB_TABLES, indexes: NB_INDEXES });
  const ovs = await OvsdbClient.connect({ remote: stack.ovsRemote, database: 'Open_vSwitch', tables: ['Interface'], leaderOnly: false });
  t.teardown(async () => {
    await nb.close();
    await ovs.close();
  });
  const readiness = new PortReadiness(new OvnNetworks(nb), ovs);
  const sw = `ls-${hex(4)}`;
  const port = hex(32);
  await stack.nbctl('ls-add', sw, '--', 'lsp-add', sw, port);
  await nb.replica.waitFor(() => nb.replica.findOne('Logical_Switch_Port', 'name', port) ?? undefined, { timeoutMs: 10_000, what: 'the port in the replica' });
  // Never bound: neither `up` nor ovn-installed will come. Taken over, say, while a warm port was being plugged.
  const waiting = readiness.wait(port, hostIfName(port), 600_000).then(
    () => 'ready',
    (err: Error) => err.message,
  );
  await stack.nbctl('lsp-del', port);
  const outcome = await Promise.race([waiting, new Promise<string>((resolve) => setTimeout(() => resolve('still waiting after 30 s'), 30_000).unref())]);
  t.match(outcome, /was deleted while waiting/, 'the wait fails as soon as the port is gone');
  await stack.nbctl('ls-del', sw);
});

t.test("cleanup removes what the driver put on this host and, with --nb, this host's NB rows", async (t) => {
  const networkId = await createNetwork('10.78.0.0/24');
  const ep = await createEndpoint(networkId, '10.78.0.2/24');
  await join(networkId, ep.id);
  const gatewayIf = (await stack.vsctl('--bare', '--columns=name', 'find', 'Interface', `external_ids:iface-id=${networkId}-gw`)).trim();
  t.match(gatewayIf, /^ovg/);
  // The running driver's own name, so that cleanup finds its socket.
  const same = config({ warmPorts: 0, pluginName: path.basename(driver.address, '.sock') });
  await t.rejects(cleanupHost(same, { nb: true }, pino({ level: 'silent' })), /still running .*stop it first/, 'refused while the driver answers');
  t.match(await stack.vsctl('list-ports', 'br-int'), hostIfName(ep.id), 'and nothing was removed');

  await driver.close();
  // What a killed driver leaves: its socket file, with nobody behind it.
  await writeFile(driver.address, '');
  const report = await cleanupHost(same, { nb: true }, pino({ level: 'silent' }));
  t.ok(report.nb && report.nb.endpoints >= 1 && report.nb.networks >= 1, `NB rows of this host removed: ${JSON.stringify(report)}`);
  const ports = await stack.vsctl('list-ports', 'br-int');
  t.notMatch(ports, /ovn[0-9a-f]{12}|ovg[0-9a-f]{12}/, 'no endpoint or gateway port left on br-int');
  t.notOk(await linkExists(hostIfName(ep.id)), "the endpoint's veth is gone");
  t.notOk(await linkExists(gatewayIf), 'and the gateway port');
  t.equal(await stack.nbctl('--bare', '--columns=name', 'find', 'Logical_Switch_Port', `external_ids:docker\\:endpoint-id=${ep.id}`), '', 'the endpoint is gone from NB');
  t.notOk((await nbSwitches()).includes(networkId), "and this host's network (its last host) with it");
  await t.rejects(stat(driver.address), 'the stale socket is gone');

  // The rest of the file's teardown expects a driver.
  driver = await startDriver(config({ warmPorts: 0 }), pino({ level: 'warn' }));
});
