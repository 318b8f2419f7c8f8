/**
 * Warm ports on networks of Docker's own IPAM, against a real single-chassis
 * OVN, called over the plugin socket as dockerd calls it. Docker gives each
 * endpoint the lowest free address (checked with engines 20.10 and 26.1), so
 * the driver keeps ports ready at those addresses; containers are network
 * namespaces this test makes.
 */
import t from 'tap';
import { createNetns, deleteNetns, linkExists, moveBackFromNetns, moveIntoNetns, ping, tcpEcho, tcpRoundTrip } from '../harness/netns.js';
import { run, waitFor } from '../harness/process.js';
import { hostIfName, peerIfName } from '../../src/host/names.js';
import { hex, WarmDriverFixture } from '../harness/warm-driver.js';

const fx = new WarmDriverFixture(t, 'ovn-test-dwarm-');
const call = (method: string, body?: unknown) => fx.call(method, body);
const createEndpoint = (...args: Parameters<WarmDriverFixture['createEndpoint']>) => fx.createEndpoint(...args);
const installed = (portName: string) => fx.installed(portName);

/** A network of Docker's IPAM ("LocalDefault" address space), gateway .1. */
async function dockerNetwork(subnet: string, aux: Record<string, string> = {}): Promise<string> {
  const networkId = hex(32);
  const prefix = subnet.replace(/\.0\/24$/, '');
  const reply = await call('NetworkDriver.CreateNetwork', {
    NetworkID: networkId,
    Options: { 'com.docker.network.generic': { 'ovn.gateway': 'docker' } },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: subnet, Gateway: `${prefix}.1/24`, AuxAddresses: aux }],
    IPv6Data: [],
  });
  if (reply.status !== 200) throw new Error(JSON.stringify(reply.body));
  return networkId;
}

/** The port set's holders: address -> holder ("warm <port>", "ep <port> <endpoint> <network>"). */
async function holders(networkId: string): Promise<Map<string, string>> {
  const out = await fx.stack.nbctl('--columns=external_ids', 'find', 'Address_Set', `name=docker_ports_${networkId}`);
  const map = new Map<string, string>();
  for (const m of out.matchAll(/"docker:ip:([0-9.]+)"="([^"]+)"/g)) map.set(m[1]!, m[2]!);
  return map;
}

/** Wait until exactly these addresses are held by warm ports, each plugged with flows installed; returns address -> port. */
async function readyAt(networkId: string, addresses: string[]): Promise<Map<string, string>> {
  return waitFor(
    async () => {
      const warm = new Map<string, string>();
      for (const [ip, holder] of await holders(networkId)) if (holder.startsWith('warm ')) warm.set(ip, holder.slice(5));
      if ([...warm.keys()].sort().join(' ') !== [...addresses].sort().join(' ')) return undefined;
      for (const port of warm.values()) {
        fx.portsSeen.add(port);
        if (!(await installed(port))) return undefined;
      }
      return warm;
    },
    { timeoutMs: 20_000, what: `warm ports at ${addresses.join(', ')}` },
  );
}

async function join(networkId: string, endpointId: string): Promise<string> {
  const reply = await call('NetworkDriver.Join', { NetworkID: networkId, EndpointID: endpointId, SandboxKey: '', Options: {} });
  if (reply.status !== 200) throw new Error(JSON.stringify(reply.body));
  return (reply.body.InterfaceName as { SrcName: string }).SrcName;
}

async function lspExists(name: string): Promise<boolean> {
  return (await fx.stack.nbctl('--bare', '--columns=name', 'find', 'Logical_Switch_Port', `name=${name}`)).trim() !== '';
}

t.test("containers start on ports made at the addresses Docker's IPAM gives next, even with ovn-northd stopped", async (t) => {
  const net = await dockerNetwork('10.160.0.0/24', { spare: '10.160.0.2/24' });
  const warm = await readyAt(net, ['10.160.0.3', '10.160.0.4']);
  t.pass('two warm ports at the lowest addresses that are neither the gateway nor an --aux-address');

  // With ovn-northd stopped no new port can get a binding: a start can only succeed on a warm port.
  process.kill(fx.stack.pids.northd, 'SIGSTOP');
  const endpoints: { id: string; ip: string; port: string; ns: string }[] = [];
  try {
    for (const ip of ['10.160.0.3', '10.160.0.4']) {
      const ep = await createEndpoint(net, `${ip}/24`);
      t.equal(ep.status, 200, JSON.stringify(ep.body));
      const mac = `0a:58:0a:a0:00:0${ip.slice(-1)}`;
      t.same(ep.body, { Interface: { MacAddress: mac } }, `the warm port's MAC is returned for ${ip}`);
      const port = warm.get(ip)!;
      t.equal((await holders(net)).get(ip), `ep ${port} ${ep.id} ${net}`, 'the endpoint adopted the warm port, recorded in the port set');
      const retry = await createEndpoint(net, `${ip}/24`, '', ep.id);
      t.same(retry.body, ep.body, 'a retried CreateEndpoint answers the same');
      t.equal(await join(net, ep.id), peerIfName(port), "Join answers with the warm port's veth");
      const ns = await createNetns();
      fx.namespaces.push(ns);
      await moveIntoNetns(peerIfName(port), ns, 'eth0', `${ip}/24`);
      endpoints.push({ id: ep.id, ip, port, ns });
    }
    const [a, b] = endpoints as [(typeof endpoints)[0], (typeof endpoints)[0]];
    t.ok(await ping(a.ns, b.ip), 'ping between the two containers while northd is stopped');
    const echo = await tcpEcho(b.ns, b.ip, 7071);
    t.equal(await tcpRoundTrip(a.ns, b.ip, 7071, 'docker-ipam'), 'docker-ipam', 'TCP too');
    await echo.stop();
  } finally {
    process.kill(fx.stack.pids.northd, 'SIGCONT');
  }
  const ids = (await fx.stack.nbctl('get', 'Logical_Switch_Port', endpoints[0]!.port, 'external_ids')).trim();
  t.notMatch(ids, /docker:endpoint-id/, 'adopting wrote nothing to the port (an LSP write costs ovn-northd a recompute)');
  const info = await call('NetworkDriver.EndpointOperInfo', { NetworkID: net, EndpointID: endpoints[0]!.id });
  t.equal((info.body.Value as Record<string, unknown>)['ovn.logical_switch_port'], endpoints[0]!.port, 'the driver finds the endpoint on it');
  await readyAt(net, ['10.160.0.5', '10.160.0.6']);
  t.pass('refilled at the next addresses');

  // The container ends; the engine moves the veth back; Docker's next container gets the same address.
  const [a] = endpoints as [(typeof endpoints)[0]];
  t.equal((await call('NetworkDriver.Leave', { NetworkID: net, EndpointID: a.id })).status, 200);
  await moveBackFromNetns(a.ns, 'eth0', peerIfName(a.port));
  t.equal((await call('NetworkDriver.DeleteEndpoint', { NetworkID: net, EndpointID: a.id })).status, 200);
  t.equal((await holders(net)).get(a.ip), `warm ${a.port}`, "the port is warm again at once (Docker's IPAM releases the address itself)");
  t.ok(await linkExists(hostIfName(a.port)), 'with its veth');
  await readyAt(net, [a.ip, '10.160.0.5']);
  t.pass('the set keeps its size: the warm port at the highest address went');
  const next = await createEndpoint(net, `${a.ip}/24`);
  t.equal((await holders(net)).get(a.ip), `ep ${a.port} ${next.id} ${net}`, "Docker's next container at that address gets the same port");
  t.equal(await join(net, next.id), peerIfName(a.port));

  // A driver restart keeps endpoints on warm ports and warm ports alike.
  await fx.restart();
  const after = await call('NetworkDriver.EndpointOperInfo', { NetworkID: net, EndpointID: next.id });
  t.equal((after.body.Value as Record<string, unknown>)['ovn.logical_switch_port'], a.port, 'after a restart the endpoint is still found on its port');
  t.ok(await lspExists(warm.get('10.160.0.4')!), 'and the other adopted port is kept');

  // Gone for good: the container's namespace went with the veth, so DeleteEndpoint removes port and holder.
  for (const ep of [next.id, endpoints[1]!.id]) t.equal((await call('NetworkDriver.Leave', { NetworkID: net, EndpointID: ep })).status, 200);
  await deleteNetns(endpoints[1]!.ns);
  await run('ip', ['link', 'del', hostIfName(a.port)]);
  for (const ep of [next.id, endpoints[1]!.id]) t.equal((await call('NetworkDriver.DeleteEndpoint', { NetworkID: net, EndpointID: ep })).status, 200);
  await waitFor(async () => !(await lspExists(a.port)) || undefined, { what: "the ended container's port to go" });
  // A refill may make a new warm port there at once: the address is Docker's lowest free one again.
  t.notMatch((await holders(net)).get(a.ip) ?? '', a.port, 'its address is no longer held for it');

  const before = [...(await holders(net)).values()].map((h) => h.split(' ')[1]!);
  t.equal((await call('NetworkDriver.DeleteNetwork', { NetworkID: net })).status, 200);
  t.equal((await fx.stack.nbctl('--bare', '--columns=name', 'find', 'Address_Set', `name=docker_ports_${net}`)).trim(), '', 'DeleteNetwork removes the port set');
  for (const port of before) {
    t.notOk(await lspExists(port), 'and every warm port');
    t.notOk(await linkExists(hostIfName(port)), 'with its veth');
  }
});

t.test("an endpoint that cannot use the warm port at its address takes the address over", async (t) => {
  const net = await dockerNetwork('10.161.0.0/24');
  const warm = await readyAt(net, ['10.161.0.2', '10.161.0.3']);
  // docker run --mac-address: the warm port's MAC does not fit.
  const ep = await createEndpoint(net, '10.161.0.2/24', '02:42:0a:a1:00:02');
  t.equal(ep.status, 200, JSON.stringify(ep.body));
  t.equal(
    (await fx.stack.nbctl('get', 'Logical_Switch_Port', ep.id, 'addresses')).trim(),
    '["02:42:0a:a1:00:02 10.161.0.2"]',
    "a port of its own, with Docker's MAC",
  );
  t.notOk(await lspExists(warm.get('10.161.0.2')!), 'the warm port at that address is gone');
  await waitFor(async () => !(await linkExists(hostIfName(warm.get('10.161.0.2')!))) || undefined, { what: 'its veth to go' });
  t.equal(
    (await fx.stack.nbctl('--bare', '--columns=name', 'find', 'Logical_Switch_Port', 'addresses{>=}"02:42:0a:a1:00:02 10.161.0.2"')).trim(),
    ep.id,
    'one port holds the address',
  );

  // Another host's warm port (global scope) at the address Docker gave here: taken over in the endpoint's own transaction.
  const foreign = hex(32);
  await fx.stack.nbctl(
    'lsp-add', net, foreign, '--', 'lsp-set-addresses', foreign, '0a:58:0a:a1:00:0a 10.161.0.10',
    '--', 'set', 'Logical_Switch_Port', foreign, 'external_ids:docker\\:owner=ovn-docker-driver', 'external_ids:docker\\:warm=another-chassis', `external_ids:docker\\:pool-v4=docker_ports_${net}`,
    'external_ids:docker\\:ipv4="10.161.0.10/24"',
    '--', 'set', 'Address_Set', `docker_ports_${net}`, `external_ids:"docker:ip:10.161.0.10"="warm ${foreign}"`,
  );
  const other = await createEndpoint(net, '10.161.0.10/24');
  t.equal(other.status, 200, JSON.stringify(other.body));
  t.same(other.body, { Interface: { MacAddress: '0a:58:0a:a1:00:0a' } }, 'the endpoint gets the MAC of its address');
  t.notOk(await lspExists(foreign), "the other host's warm port is taken over");
  t.equal(
    (await fx.stack.nbctl('--bare', '--columns=name', 'find', 'Logical_Switch_Port', 'addresses{>=}"0a:58:0a:a1:00:0a 10.161.0.10"')).trim(),
    other.id,
    'one port holds the address',
  );
  t.notOk((await holders(net)).has('10.161.0.10'), 'nor does the port set any more');
  for (const id of [ep.id, other.id]) await call('NetworkDriver.DeleteEndpoint', { NetworkID: net, EndpointID: id });
  t.equal((await call('NetworkDriver.DeleteNetwork', { NetworkID: net })).status, 200);
});

t.test('with an --ip-range, warm ports follow the addresses Docker gives', async (t) => {
  const net = await dockerNetwork('10.162.0.0/24');
  const low = await readyAt(net, ['10.162.0.2', '10.162.0.3']);
  // Docker's IPAM gives .129 first with --ip-range 10.162.0.128/25 (which the driver is never told).
  const ep = await createEndpoint(net, '10.162.0.129/24');
  t.equal(ep.status, 200, JSON.stringify(ep.body));
  t.equal(await lspExists(ep.id), true, 'no warm port there: a port of its own');
  await readyAt(net, ['10.162.0.130', '10.162.0.131']);
  t.pass('the warm ports moved to the next addresses above it');
  for (const port of low.values()) t.notOk(await lspExists(port), 'the ones below are removed');
  await call('NetworkDriver.DeleteEndpoint', { NetworkID: net, EndpointID: ep.id });
  t.equal((await call('NetworkDriver.DeleteNetwork', { NetworkID: net })).status, 200);
});

t.test('an --ip above the warm ports moves them up; the next address Docker gives below brings them back', async (t) => {
  const net = await dockerNetwork('10.163.0.0/24');
  await readyAt(net, ['10.163.0.2', '10.163.0.3']);
  const fixed = await createEndpoint(net, '10.163.0.50/24');
  t.equal(fixed.status, 200, JSON.stringify(fixed.body));
  // Indistinguishable from an --ip-range starting there: the driver follows it.
  await readyAt(net, ['10.163.0.51', '10.163.0.52']);
  const auto = await createEndpoint(net, '10.163.0.2/24');
  t.equal(auto.status, 200, JSON.stringify(auto.body));
  await readyAt(net, ['10.163.0.3', '10.163.0.4']);
  t.pass('back at the lowest free addresses');
  for (const ep of [fixed.id, auto.id]) await call('NetworkDriver.DeleteEndpoint', { NetworkID: net, EndpointID: ep });
  t.equal((await call('NetworkDriver.DeleteNetwork', { NetworkID: net })).status, 200);
});

t.test('a burst of endpoints at the lowest addresses, with refills running: one port per address', async (t) => {
  const net = await dockerNetwork('10.164.0.0/24');
  await readyAt(net, ['10.164.0.2', '10.164.0.3']);
  const addresses = Array.from({ length: 12 }, (_, i) => `10.164.0.${i + 2}`);
  // As Docker does for parallel starts: CreateEndpoint and Join side by side, each at the next lowest address.
  const endpoints = await Promise.all(
    addresses.map(async (ip) => {
      const ep = await createEndpoint(net, `${ip}/24`);
      t.equal(ep.status, 200, JSON.stringify(ep.body));
      await fx.engineTakes(await join(net, ep.id));
      return ep.id;
    }),
  );
  const portsAt = async () => {
    const out = await fx.stack.nbctl('--format=csv', '--data=bare', '--no-headings', '--columns=addresses', 'list', 'Logical_Switch_Port');
    const count = new Map<string, number>();
    for (const line of out.split('\n')) {
      const ip = line.split(' ')[1];
      if (ip?.startsWith('10.164.0.')) count.set(ip, (count.get(ip) ?? 0) + 1);
    }
    return count;
  };
  // Let the refill that follows the burst run too: the pool grew by the starts that found it empty.
  const grown = await waitFor(
    async () => {
      const warm = [...(await holders(net))].filter(([, h]) => h.startsWith('warm ')).map(([ip]) => ip);
      const want = Array.from({ length: warm.length }, (_, i) => `10.164.0.${i + 14}`);
      return warm.length > 2 && warm.sort().join() === want.sort().join() ? warm.length : undefined;
    },
    { timeoutMs: 20_000, what: 'more than two warm ports, from 10.164.0.14 up' },
  );
  t.ok(grown > 2, `the pool grew to ${grown} warm ports`);
  const count = await portsAt();
  for (const ip of addresses) t.equal(count.get(ip), 1, `one port at ${ip}`);
  t.same([...count.values()].filter((n) => n !== 1), [], 'no address on two ports');
  for (const id of endpoints) {
    const info = await call('NetworkDriver.EndpointOperInfo', { NetworkID: net, EndpointID: id });
    t.equal((info.body.Value as Record<string, unknown>)['ovn.up'], true, `endpoint ${id.slice(0, 8)} is up`);
    fx.portsSeen.add(String((info.body.Value as Record<string, unknown>)['ovn.logical_switch_port']));
  }
  for (const id of endpoints) await call('NetworkDriver.DeleteEndpoint', { NetworkID: net, EndpointID: id });
  t.equal((await call('NetworkDriver.DeleteNetwork', { NetworkID: net })).status, 200);
});

t.test('a burst that empties the pool grows it: the next burst as large starts on warm ports only; idle, it shrinks back', async (t) => {
  const net = await dockerNetwork('10.165.0.0/24');
  await readyAt(net, ['10.165.0.2', '10.165.0.3']);
  const at = (from: number, n: number) => Array.from({ length: n }, (_, i) => `10.165.0.${from + i}`);
  const burst = (ips: string[]) =>
    Promise.all(
      ips.map(async (ip) => {
        const ep = await createEndpoint(net, `${ip}/24`);
        t.equal(ep.status, 200, JSON.stringify(ep.body));
        const ifName = await join(net, ep.id);
        await fx.engineTakes(ifName);
        return { id: ep.id, ip, ifName };
      }),
    );
  // Eight at once (the CreateEndpoints all well within the two seconds before a refill): two warm, six short.
  const first = await burst(at(2, 8));
  const warm = await readyAt(net, at(10, 8));
  t.pass('eight warm ports now, at the next eight addresses');

  // With ovn-northd stopped, a start can only succeed on a warm port.
  process.kill(fx.stack.pids.northd, 'SIGSTOP');
  let second: Awaited<ReturnType<typeof burst>> = [];
  try {
    second = await burst(at(10, 8));
  } finally {
    process.kill(fx.stack.pids.northd, 'SIGCONT');
  }
  for (const ep of second) t.equal(ep.ifName, peerIfName(warm.get(ep.ip)!), `${ep.ip} started on its warm port`);
  await readyAt(net, at(18, 8));
  t.pass('and refilled to eight');

  // Idle: the pool halves each period, 8 -> 5 -> 3 -> 2, dropping its highest addresses.
  await fx.restart({ warmPortsIdleMs: 1000 });
  await readyAt(net, at(18, 2));
  t.pass('back to two warm ports after the idle periods');

  for (const ep of [...first, ...second]) {
    const info = await call('NetworkDriver.EndpointOperInfo', { NetworkID: net, EndpointID: ep.id });
    fx.portsSeen.add(String((info.body.Value as Record<string, unknown>)['ovn.logical_switch_port']));
    await call('NetworkDriver.DeleteEndpoint', { NetworkID: net, EndpointID: ep.id });
  }
  t.equal((await call('NetworkDriver.DeleteNetwork', { NetworkID: net })).status, 200);
  await fx.restart();
});
