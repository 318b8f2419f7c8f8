/**
 * Warm ports against a real single-chassis OVN: on a network of our IPAM
 * the driver keeps ports plugged and bound ahead of time, RequestAddress
 * hands out their addresses, CreateEndpoint adopts them and Join answers
 * without waiting for OVN. Called over the plugin socket as dockerd calls
 * it; containers are network namespaces this test makes.
 */
import t from 'tap';
import { createNetns, linkExists, moveBackFromNetns, moveIntoNetns, ping, tcpEcho, tcpRoundTrip } from '../harness/netns.js';
import { callPlugin } from '../harness/plugin-client.js';
import { run, waitFor } from '../harness/process.js';
import { hostIfName, peerIfName } from '../../src/host/names.js';
import { hex, WarmDriverFixture } from '../harness/warm-driver.js';
import { testDriverConfig } from '../harness/driver-config.js';
import { captureLog } from '../harness/driver-log.js';
import { startDriver, type RunningDriver } from '../../src/service.js';

const fx = new WarmDriverFixture(t, 'ovn-test-warm-');
const call = (method: string, body?: unknown) => fx.call(method, body);
const createEndpoint = (...args: Parameters<WarmDriverFixture['createEndpoint']>) => fx.createEndpoint(...args);
const installed = (portName: string) => fx.installed(portName);

interface NbPort {
  name: string;
  addresses: string;
  ids: string;
}

/** Warm (or claimed) ports of this chassis on the pool's switch, read with ovn-nbctl. */
async function warmPorts(pool: string): Promise<NbPort[]> {
  const out = await fx.stack.nbctl(
    '--format=csv', '--data=bare', '--no-headings', '--columns=name,addresses,external_ids',
    'find', 'Logical_Switch_Port', `external_ids:docker\\:warm=${fx.stack.systemId}`, `external_ids:docker\\:pool-v4=${pool}`,
  );
  const ports = out.split('\n').filter(Boolean).map((line) => {
    const [name, addresses, ids] = line.split(',');
    return { name: name!, addresses: addresses ?? '', ids: ids ?? '' };
  });
  for (const p of ports) fx.portsSeen.add(p.name);
  return ports;
}

async function reservation(pool: string, ip: string): Promise<string> {
  return (await fx.stack.nbctl('--if-exists', 'get', 'Address_Set', pool, `external_ids:"docker:ip:${ip}"`)).trim().replace(/"/g, '');
}

/** Wait until `count` warm ports are ready: in NB, held as warm, plugged with flows installed. */
async function readyWarmPorts(pool: string, count: number): Promise<NbPort[]> {
  return waitFor(
    async () => {
      // Adopted ports keep docker:warm: the pool's holder tells the states apart.
      const ports: NbPort[] = [];
      for (const p of await warmPorts(pool)) {
        if ((await reservation(pool, p.addresses.split(' ')[1]!)) === `warm ${p.name}`) ports.push(p);
      }
      if (ports.length !== count) return undefined;
      for (const p of ports) if (!(await installed(p.name))) return undefined;
      return ports;
    },
    { timeoutMs: 20_000, what: `${count} ready warm ports on ${pool}` },
  );
}

async function ipamNetwork(subnet: string, host?: RunningDriver): Promise<{ networkId: string; poolId: string; pool: string }> {
  const call = (method: string, body?: unknown) => callPlugin((host ?? fx.driver).address, method, body);
  const poolReply = await call('IpamDriver.RequestPool', { AddressSpace: 'ovn', Pool: subnet, SubPool: '', Options: {}, V6: false });
  if (poolReply.status !== 200) throw new Error(JSON.stringify(poolReply.body));
  const poolId = String(poolReply.body.PoolID);
  const gw = await call('IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } });
  const networkId = hex(32);
  const reply = await call('NetworkDriver.CreateNetwork', {
    NetworkID: networkId,
    Options: {},
    IPv4Data: [{ AddressSpace: 'ovn', Pool: subnet, Gateway: String(gw.body.Address) }],
    IPv6Data: [],
  });
  if (reply.status !== 200) throw new Error(JSON.stringify(reply.body));
  return { networkId, poolId, pool: `docker_pool_${subnet.replace('/', '_')}` };
}

async function requestAddress(poolId: string, wanted = ''): Promise<{ status: number; address: string; err: string }> {
  const reply = await call('IpamDriver.RequestAddress', { PoolID: poolId, Address: wanted, Options: {} });
  return { status: reply.status, address: String(reply.body.Address ?? ''), err: String(reply.body.Err ?? '') };
}

/** An endpoint's port in NB: one made for it carries its id; a warm port it adopted is named in the pool ("ep <port> <endpoint> <network>"). */
async function portOf(endpointId: string): Promise<string> {
  const own = await fx.stack.nbctl('--bare', '--columns=name', 'find', 'Logical_Switch_Port', `external_ids:docker\\:endpoint-id=${endpointId}`);
  if (own.trim()) return own.trim();
  const pools = await fx.stack.nbctl('--bare', '--columns=external_ids', 'list', 'Address_Set');
  return new RegExp(`ep ([0-9a-f]{64}) ${endpointId} `).exec(pools)?.[1] ?? '';
}

t.test('containers start on warm ports, even with ovn-northd stopped', async (t) => {
  const net = await ipamNetwork('10.150.0.0/24');
  const warm = await readyWarmPorts(net.pool, 2);
  t.same(warm.map((p) => p.addresses.split(' ')[1]).sort(), ['10.150.0.2', '10.150.0.3'], 'warm ports hold the lowest free addresses');
  t.ok(warm.every((p) => /^0a:58:0a:96:00:0[23] 10\.150\.0\.[23]$/.test(p.addresses)), 'with the MAC derived from the address');

  // With ovn-northd stopped no new port can get a binding: a start can only succeed on a warm port.
  process.kill(fx.stack.pids.northd, 'SIGSTOP');
  const endpoints: { id: string; ip: string; port: string }[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const { status, address } = await requestAddress(net.poolId);
      t.equal(status, 200);
      const ip = address.split('/')[0]!;
      const holder = warm.find((p) => p.addresses.endsWith(` ${ip}`));
      t.ok(holder, `RequestAddress gave out warm port ${i}'s address ${address}`);
      t.match(await reservation(net.pool, ip), /^[0-9a-f]{12} [0-9a-f]{8}$/, "the address is Docker's now, no longer warm");

      const ep = await createEndpoint(net.networkId, address);
      t.equal(ep.status, 200, JSON.stringify(ep.body));
      t.same(ep.body, { Interface: { MacAddress: holder!.addresses.split(' ')[0] } }, "the warm port's MAC is returned");
      t.equal(await portOf(ep.id), holder!.name, 'the endpoint adopted the warm port');
      const retry = await createEndpoint(net.networkId, address, '', ep.id);
      t.same(retry.body, ep.body, 'a retried CreateEndpoint answers the same');
      t.equal(await portOf(ep.id), holder!.name, 'and keeps the adopted port');

      const joined = await call('NetworkDriver.Join', { NetworkID: net.networkId, EndpointID: ep.id, SandboxKey: '', Options: {} });
      t.equal(joined.status, 200, JSON.stringify(joined.body));
      t.same(joined.body.InterfaceName, { SrcName: peerIfName(holder!.name), DstPrefix: 'eth' }, "Join answers with the warm port's veth");
      endpoints.push({ id: ep.id, ip, port: holder!.name });
    }
    const [a, b] = endpoints as [(typeof endpoints)[0], (typeof endpoints)[0]];
    const nsA = await createNetns();
    const nsB = await createNetns();
    fx.namespaces.push(nsA, nsB);
    await moveIntoNetns(peerIfName(a.port), nsA, 'eth0', `${a.ip}/24`);
    await moveIntoNetns(peerIfName(b.port), nsB, 'eth0', `${b.ip}/24`);
    t.ok(await ping(nsA, b.ip), 'ping between the two containers while northd is stopped');
    const echo = await tcpEcho(nsB, b.ip, 7070);
    t.equal(await tcpRoundTrip(nsA, b.ip, 7070, 'warm'), 'warm', 'TCP too');
    await echo.stop();
  } finally {
    process.kill(fx.stack.pids.northd, 'SIGCONT');
  }

  const refilled = await readyWarmPorts(net.pool, 2);
  t.same(refilled.map((p) => p.addresses.split(' ')[1]).sort(), ['10.150.0.4', '10.150.0.5'], 'both hand-outs refilled');
  const adoptedIds = (await fx.stack.nbctl('get', 'Logical_Switch_Port', endpoints[0]!.port, 'external_ids')).trim();
  t.notMatch(adoptedIds, /docker:endpoint-id/, 'adopting wrote nothing to the port (an LSP write costs ovn-northd a recompute)');
  t.equal(await reservation(net.pool, endpoints[0]!.ip), `ep ${endpoints[0]!.port} ${endpoints[0]!.id} ${net.networkId}`, 'the pool records the endpoint');
  const info = await call('NetworkDriver.EndpointOperInfo', { NetworkID: net.networkId, EndpointID: endpoints[0]!.id });
  t.equal((info.body.Value as Record<string, unknown>)['ovn.logical_switch_port'], endpoints[0]!.port, 'and the driver finds it there');

  for (const ep of endpoints) {
    t.equal((await call('NetworkDriver.Leave', { NetworkID: net.networkId, EndpointID: ep.id })).status, 200);
    t.equal((await call('NetworkDriver.DeleteEndpoint', { NetworkID: net.networkId, EndpointID: ep.id })).status, 200);
    t.equal((await call('IpamDriver.ReleaseAddress', { PoolID: net.poolId, Address: ep.ip })).status, 200);
  }
  await waitFor(async () => !(await linkExists(hostIfName(endpoints[0]!.port))) && !(await linkExists(hostIfName(endpoints[1]!.port))), {
    what: "the adopted ports' veths to go after Leave",
  });
  t.equal((await fx.stack.nbctl('--bare', '--columns=name', 'find', 'Logical_Switch_Port', `name=${endpoints[0]!.port}`)).trim(), '', 'DeleteEndpoint removed the port');
  await call('NetworkDriver.DeleteNetwork', { NetworkID: net.networkId });
  await call('IpamDriver.ReleasePool', { PoolID: net.poolId });
});

t.test('a warm address taken over, released unused, or given a MAC of its own', async (t) => {
  const net = await ipamNetwork('10.151.0.0/24');
  const [first, second] = (await readyWarmPorts(net.pool, 2)).sort((x, y) => (x.addresses < y.addresses ? -1 : 1)) as [NbPort, NbPort];

  // --ip of a warm port's address: the request wins, the warm port goes.
  const fixed = await requestAddress(net.poolId, '10.151.0.2');
  t.equal(fixed.status, 200, fixed.err);
  t.equal(fixed.address, '10.151.0.2/24', '--ip takes a warm address over');
  t.notOk((await warmPorts(net.pool)).some((p) => p.name === first.name), 'the warm port that held it is gone from NB');
  const ep = await createEndpoint(net.networkId, fixed.address);
  t.equal(ep.status, 200);
  t.equal(await portOf(ep.id), ep.id, 'an endpoint on a taken-over address gets a port of its own');
  await call('NetworkDriver.DeleteEndpoint', { NetworkID: net.networkId, EndpointID: ep.id });
  await call('IpamDriver.ReleaseAddress', { PoolID: net.poolId, Address: '10.151.0.2' });

  // Docker took a warm address but the container start failed before CreateEndpoint.
  await readyWarmPorts(net.pool, 2);
  const unused = await requestAddress(net.poolId);
  t.equal(unused.status, 200);
  const unusedIp = unused.address.split('/')[0]!;
  const unusedPort = (await warmPorts(net.pool)).find((p) => p.addresses.endsWith(` ${unusedIp}`))!;
  t.ok(unusedPort, 'the address came from a warm port');
  t.equal((await call('IpamDriver.ReleaseAddress', { PoolID: net.poolId, Address: unusedIp })).status, 200);
  t.notOk((await warmPorts(net.pool)).some((p) => p.name === unusedPort.name), 'released unused: the claimed port is removed');
  t.equal(await reservation(net.pool, unusedIp).then((r) => (r.startsWith('warm ') ? 'warm' : r)), '', 'and the address is free (or warm again)');
  t.notOk(await linkExists(hostIfName(unusedPort.name)), 'with its veth');

  // Docker asks for a MAC of its own (docker run --mac-address).
  await readyWarmPorts(net.pool, 2);
  const withMac = await requestAddress(net.poolId);
  const macIp = withMac.address.split('/')[0]!;
  const macPort = (await warmPorts(net.pool)).find((p) => p.addresses.endsWith(` ${macIp}`))!;
  const macEp = await createEndpoint(net.networkId, withMac.address, '02:42:0a:97:00:99');
  t.equal(macEp.status, 200, JSON.stringify(macEp.body));
  t.equal(await portOf(macEp.id), macEp.id, 'a port of its own');
  t.equal(
    (await fx.stack.nbctl('get', 'Logical_Switch_Port', macEp.id, 'addresses')).trim(),
    `["02:42:0a:97:00:99 ${macIp}"]`,
    "with Docker's MAC and the claimed address",
  );
  t.notOk((await warmPorts(net.pool)).some((p) => p.name === macPort.name), 'the warm port with the other MAC is removed');
  t.match(await reservation(net.pool, macIp), /^[0-9a-f]{12} [0-9a-f]{8}$/, 'the address stays with the endpoint');
  await call('NetworkDriver.DeleteEndpoint', { NetworkID: net.networkId, EndpointID: macEp.id });
  await call('IpamDriver.ReleaseAddress', { PoolID: net.poolId, Address: macIp });
  void second;

  // DeleteNetwork of this host's last network on the switch removes its warm ports, addresses and veths.
  const before = await readyWarmPorts(net.pool, 2);
  t.equal((await call('NetworkDriver.DeleteNetwork', { NetworkID: net.networkId })).status, 200);
  for (const p of before) {
    t.equal((await fx.stack.nbctl('--bare', '--columns=name', 'find', 'Logical_Switch_Port', `name=${p.name}`)).trim(), '', 'warm port removed');
    t.notOk(await linkExists(hostIfName(p.name)), 'its veth removed');
  }
  const sets = await fx.stack.nbctl('--bare', '--columns=external_ids', 'list', 'Address_Set');
  t.notMatch(sets, /(warm|recycled|ep) [0-9a-f]{64}/, 'no address held by a warm port any more');
  await call('IpamDriver.ReleasePool', { PoolID: net.poolId });
});

t.test("an adopted port keeps its address until the port goes, even when DeleteEndpoint failed", async (t) => {
  const net = await ipamNetwork('10.156.0.0/24');
  await readyWarmPorts(net.pool, 2);
  const { address } = await requestAddress(net.poolId);
  const ip = address.split('/')[0]!;
  const ep = await createEndpoint(net.networkId, address);
  t.equal(ep.status, 200, JSON.stringify(ep.body));
  const port = await portOf(ep.id);
  t.not(port, ep.id, 'the endpoint adopted a warm port');

  // The engine releases the address even when its DeleteEndpoint failed (NB unreachable, say).
  t.equal((await call('IpamDriver.ReleaseAddress', { PoolID: net.poolId, Address: ip })).status, 200);
  t.equal(await reservation(net.pool, ip), `ep ${port} ${ep.id} ${net.networkId}`, "the address stays the endpoint's while its port exists");
  t.equal((await requestAddress(net.poolId, ip)).status, 409, 'and is not handed out again');
  const info = await call('NetworkDriver.EndpointOperInfo', { NetworkID: net.networkId, EndpointID: ep.id });
  t.equal((info.body.Value as Record<string, unknown>)['ovn.logical_switch_port'], port, 'the endpoint is still found, for the orphan sweep to remove');

  // Removed as the engine (or the orphan sweep) does: then the address is free, or warm on the recycled port.
  t.equal((await call('NetworkDriver.DeleteEndpoint', { NetworkID: net.networkId, EndpointID: ep.id })).status, 200);
  t.equal((await call('IpamDriver.ReleaseAddress', { PoolID: net.poolId, Address: ip })).status, 200);
  const after = await reservation(net.pool, ip);
  t.ok(after === '' || after === `warm ${port}`, `the address is freed, or warm again on the kept port (${after})`);
  const rows = await fx.stack.nbctl('--format=csv', '--data=bare', '--no-headings', '--columns=name,addresses', 'list', 'Logical_Switch_Port');
  const holders = rows.split('\n').filter((line) => line.endsWith(` ${ip}`)).map((line) => line.split(',')[0]);
  t.same(holders, after === '' ? [] : [port], 'no port holds a free address');
  await call('NetworkDriver.DeleteNetwork', { NetworkID: net.networkId });
  await call('IpamDriver.ReleasePool', { PoolID: net.poolId });
});

t.test("a full pool: another host's request takes the last addresses over from warm ports", async (t) => {
  // Host B, without warm ports, on the same pool. (Started first: the harness has one chassis, and a
  // driver without warm ports removes those of its chassis when it starts.)
  const hostB = await fx.start({ warmPorts: 0 });
  t.teardown(() => hostB.close());
  // A /28 leaves 13 endpoint addresses after the gateway; warm ports stop while 8 or fewer would stay free.
  const net = await ipamNetwork('10.152.0.0/28');
  const warm = await readyWarmPorts(net.pool, 2);
  const poolB = await callPlugin(hostB.address, 'IpamDriver.RequestPool', { AddressSpace: 'ovn', Pool: '10.152.0.0/28', SubPool: '', Options: {}, V6: false });
  const poolIdB = String(poolB.body.PoolID);
  const got: string[] = [];
  for (let i = 0; i < 13; i++) {
    const r = await callPlugin(hostB.address, 'IpamDriver.RequestAddress', { PoolID: poolIdB, Address: '', Options: {} });
    t.equal(r.status, 200, String(r.body.Err ?? `address ${i}`));
    got.push(String(r.body.Address));
  }
  t.equal(new Set(got).size, 13, 'all 13 addresses, distinct');
  t.ok(warm.every((p) => got.includes(`${p.addresses.split(' ')[1]}/28`)), "including the warm ports' two");
  const last = await callPlugin(hostB.address, 'IpamDriver.RequestAddress', { PoolID: poolIdB, Address: '', Options: {} });
  t.equal(last.status, 409);
  t.match(String(last.body.Err), /no free address left in pool 10\.152\.0\.0\/28/);
  t.same(await warmPorts(net.pool), [], 'the warm ports are gone from NB');
  for (const p of warm) {
    await waitFor(async () => !(await linkExists(hostIfName(p.name))), { what: `host A to remove the veth of taken-over ${p.name}` });
  }
  t.pass("host A removed the taken-over ports' veths");
  for (const a of got) await callPlugin(hostB.address, 'IpamDriver.ReleaseAddress', { PoolID: poolIdB, Address: a.split('/')[0] });
  await callPlugin(hostB.address, 'IpamDriver.ReleasePool', { PoolID: poolIdB });
  await call('NetworkDriver.DeleteNetwork', { NetworkID: net.networkId });
  await call('IpamDriver.ReleasePool', { PoolID: net.poolId });
});

async function ovsInterfaceUuid(portName: string): Promise<string> {
  return (await fx.stack.vsctl('--if-exists', 'get', 'Interface', hostIfName(portName), '_uuid')).trim();
}

t.test('a refill waits until the engine has moved the interfaces of the starts in flight', async (t) => {
  const { log, entries } = captureLog('debug');
  await fx.restart({}, log);
  t.teardown(() => fx.restart());
  const net = await ipamNetwork('10.157.0.0/24');
  await readyWarmPorts(net.pool, 2);
  const starts: { ep: string; ip: string; containerEnd: string }[] = [];
  for (let i = 0; i < 2; i++) {
    const { address } = await requestAddress(net.poolId);
    const ep = await createEndpoint(net.networkId, address);
    const joined = await call('NetworkDriver.Join', { NetworkID: net.networkId, EndpointID: ep.id, SandboxKey: '', Options: {} });
    const containerEnd = (joined.body.InterfaceName as { SrcName: string }).SrcName;
    fx.portsSeen.add(await portOf(ep.id));
    starts.push({ ep: ep.id, ip: address.split('/')[0]!, containerEnd });
  }
  // The engine is busy with the rest of both starts for a while (past the 2 s after which a refill is due), then moves the interfaces.
  await new Promise((resolve) => setTimeout(resolve, 3000));
  await fx.engineTakes(starts[0]!.containerEnd);
  await new Promise((resolve) => setTimeout(resolve, 500));
  const lastMoved = Date.now();
  await fx.engineTakes(starts[1]!.containerEnd);
  await readyWarmPorts(net.pool, 2);
  const waited = entries.find((e) => e.msg === 'refill waited for the container starts in flight');
  t.equal(waited?.starts, 2, 'the refill waited for both starts');
  t.ok(waited && (waited.time as number) >= lastMoved, 'until the engine had moved the last interface');
  const made = entries.filter((e) => e.msg === 'warm ports ready').at(-1);
  t.ok(made && (made.time as number) >= (waited?.time as number), 'and made its ports after that');

  for (const s of starts) {
    await call('NetworkDriver.Leave', { NetworkID: net.networkId, EndpointID: s.ep });
    await call('NetworkDriver.DeleteEndpoint', { NetworkID: net.networkId, EndpointID: s.ep });
    await call('IpamDriver.ReleaseAddress', { PoolID: net.poolId, Address: s.ip });
  }
  t.equal((await call('NetworkDriver.DeleteNetwork', { NetworkID: net.networkId })).status, 200);
  await call('IpamDriver.ReleasePool', { PoolID: net.poolId });
});

t.test("a finished container's port serves the next container as it is", async (t) => {
  const net = await ipamNetwork('10.154.0.0/24');
  // A long-lived container at --ip 10.154.0.200, for the others to reach.
  const fixed = await requestAddress(net.poolId, '10.154.0.200');
  const server = await createEndpoint(net.networkId, fixed.address);
  const serverJoin = await call('NetworkDriver.Join', { NetworkID: net.networkId, EndpointID: server.id, SandboxKey: '', Options: {} });
  fx.portsSeen.add(server.id);
  const serverNs = await createNetns();
  fx.namespaces.push(serverNs);
  await moveIntoNetns((serverJoin.body.InterfaceName as { SrcName: string }).SrcName, serverNs, 'eth0', fixed.address);
  await readyWarmPorts(net.pool, 2);
  /** One container's life on this network, as the engine drives it; `tamper` runs inside before it ends. */
  const life = async (tamper?: (ns: string) => Promise<void>) => {
    const { address } = await requestAddress(net.poolId);
    const ip = address.split('/')[0]!;
    const ep = await createEndpoint(net.networkId, address);
    const joined = await call('NetworkDriver.Join', { NetworkID: net.networkId, EndpointID: ep.id, SandboxKey: '', Options: {} });
    const peer = (joined.body.InterfaceName as { SrcName: string }).SrcName;
    const port = await portOf(ep.id);
    fx.portsSeen.add(port);
    const ns = await createNetns();
    fx.namespaces.push(ns);
    await moveIntoNetns(peer, ns, 'eth0', address);
    const reached = await ping(ns, '10.154.0.200');
    const ovsInterface = await ovsInterfaceUuid(port);
    await tamper?.(ns);
    t.equal((await call('NetworkDriver.Leave', { NetworkID: net.networkId, EndpointID: ep.id })).status, 200);
    await moveBackFromNetns(ns, 'eth0', peer);
    t.equal((await call('NetworkDriver.DeleteEndpoint', { NetworkID: net.networkId, EndpointID: ep.id })).status, 200);
    t.equal((await call('IpamDriver.ReleaseAddress', { PoolID: net.poolId, Address: ip })).status, 200);
    return { ip, port, reached, ovsInterface };
  };

  const first = await life();
  t.ok(first.reached, 'the container reached another');
  const ovsBefore = await ovsInterfaceUuid(first.port);
  t.equal(await reservation(net.pool, first.ip), `warm ${first.port}`, 'the address is held by the port again, as warm');
  const ids = (await fx.stack.nbctl('get', 'Logical_Switch_Port', first.port, 'external_ids')).trim();
  t.notMatch(ids, /docker:endpoint-id/, 'the port no longer belongs to the endpoint');
  t.ok(await linkExists(hostIfName(first.port)), 'the veth was kept');
  t.equal(await ovsInterfaceUuid(first.port), ovsBefore, 'the OVS interface is untouched');

  // Hand out ports until the recycled one comes round again; it carries the next container.
  let again = await life();
  for (let i = 0; i < 3 && again.port !== first.port; i++) again = await life();
  t.equal(again.port, first.port, 'the recycled port served another container');
  t.ok(again.reached, 'which reached another through it');
  // Read while it served: once it ends, the pool may have refilled meanwhile and delete the port instead of keeping it.
  t.equal(again.ovsInterface, ovsBefore, 'on the same OVS interface');

  // A container with NET_ADMIN changed its interface (here its MAC): the port is not reused.
  const tampered = await life(async (ns) => {
    await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'address', '02:00:00:00:00:66']);
  });
  t.equal((await fx.stack.nbctl('--bare', '--columns=name', 'find', 'Logical_Switch_Port', `name=${tampered.port}`)).trim(), '', 'its port was deleted');
  t.notOk(await linkExists(hostIfName(tampered.port)), 'with its veth');
  t.notMatch(await reservation(net.pool, tampered.ip), new RegExp(tampered.port), 'and its address freed');

  await call('NetworkDriver.Leave', { NetworkID: net.networkId, EndpointID: server.id });
  await call('NetworkDriver.DeleteEndpoint', { NetworkID: net.networkId, EndpointID: server.id });
  await call('NetworkDriver.DeleteNetwork', { NetworkID: net.networkId });
  await call('IpamDriver.ReleasePool', { PoolID: net.poolId });
});

t.test('with ovn-controller down, no half-made warm port stays, and starts go without one', async (t) => {
  const { log, entries } = captureLog('warn');
  const impatient = await startDriver(testDriverConfig(fx.stack, fx.dir, { warmPorts: 2, portUpTimeoutMs: 800 }), log);
  t.teardown(() => impatient.close());
  const ourLinks = async (): Promise<string[]> => (await run('ip', ['-o', 'link', 'show'])).stdout.match(/\bovn[0-9a-f]{12}\b/g) ?? [];
  const linksBefore = await ourLinks();
  process.kill(fx.stack.pids.controller, 'SIGSTOP');
  let net: Awaited<ReturnType<typeof ipamNetwork>>;
  try {
    net = await ipamNetwork('10.155.0.0/24', impatient);
    // The first warm port cannot be bound within 800 ms: it is removed (port, veth, address) before the failure is logged,
    // and the next try waits 10 s.
    const failure = await waitFor(() => entries.find((e) => e.pool === net.pool && /cannot make a warm port/.test(e.msg ?? '')), {
      timeoutMs: 15_000,
      what: 'the first warm port to fail',
    });
    t.match(failure.err, /logical switch port [0-9a-f]+ to come up/, 'a warm port was made, and never came up');
    t.same(await warmPorts(net.pool), [], 'no warm port left in NB');
    const linksNow = await ourLinks();
    t.same(linksNow.filter((l) => !linksBefore.includes(l)), [], 'and no veth');
    t.notMatch(await fx.stack.nbctl('--bare', '--columns=external_ids', 'list', 'Address_Set'), /warm [0-9a-f]{64}/, 'and no address held for one');
  } finally {
    process.kill(fx.stack.pids.controller, 'SIGCONT');
  }
  // A container start then takes the lowest free address and the ordinary path.
  const viaImpatient = (method: string, body?: unknown) => callPlugin(impatient.address, method, body);
  const addr = await viaImpatient('IpamDriver.RequestAddress', { PoolID: net.poolId, Address: '', Options: {} });
  t.equal(addr.body.Address, '10.155.0.2/24');
  const id = hex(32);
  const created = await viaImpatient('NetworkDriver.CreateEndpoint', {
    NetworkID: net.networkId,
    EndpointID: id,
    Interface: { Address: addr.body.Address, AddressIPv6: '', MacAddress: '' },
    Options: {},
  });
  t.equal(created.status, 200);
  t.equal(await portOf(id), id, 'a port of its own');
  await viaImpatient('NetworkDriver.DeleteEndpoint', { NetworkID: net.networkId, EndpointID: id });
  await viaImpatient('IpamDriver.ReleaseAddress', { PoolID: net.poolId, Address: '10.155.0.2' });
  await viaImpatient('NetworkDriver.DeleteNetwork', { NetworkID: net.networkId });
  await viaImpatient('IpamDriver.ReleasePool', { PoolID: net.poolId });
});

t.test('a restarted driver takes its warm ports back and drops half-claimed ones', async (t) => {
  const net = await ipamNetwork('10.153.0.0/24');
  const warm = await readyWarmPorts(net.pool, 2);
  const claimed = await requestAddress(net.poolId);
  const claimedIp = claimed.address.split('/')[0]!;
  const claimedPort = warm.find((p) => p.addresses.endsWith(` ${claimedIp}`))!;
  const keptPort = warm.find((p) => p !== claimedPort)!;

  // A crash: the process is gone, its rows and veths stay.
  await fx.restart();
  const after = await readyWarmPorts(net.pool, 2);
  t.notOk(after.some((p) => p.name === claimedPort.name), 'the claimed, never adopted port is removed');
  t.notOk(await linkExists(hostIfName(claimedPort.name)), 'with its veth');
  t.ok(after.some((p) => p.name === keptPort.name), 'the warm one is kept, not made again');
  t.match(await reservation(net.pool, claimedIp), /^[0-9a-f]{12} [0-9a-f]{8}$/, "the claimed address stays Docker's");

  // Docker's CreateEndpoint for the claimed address still works after the restart.
  const ep = await createEndpoint(net.networkId, claimed.address);
  t.equal(ep.status, 200);
  t.equal(await portOf(ep.id), ep.id, 'on a port of its own');
  await call('NetworkDriver.DeleteEndpoint', { NetworkID: net.networkId, EndpointID: ep.id });
  await call('IpamDriver.ReleaseAddress', { PoolID: net.poolId, Address: claimedIp });
  await call('NetworkDriver.DeleteNetwork', { NetworkID: net.networkId });
  await call('IpamDriver.ReleasePool', { PoolID: net.poolId });
  const left = (await fx.stack.vsctl('list-ports', 'br-int')).split('\n').filter((p) => /^ovn[0-9a-f]{12}$/.test(p));
  t.same(left, [], 'nothing of ours left on br-int');
});
