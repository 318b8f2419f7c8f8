/**
 * The start-up sweep of host ports against real OVS (the single-chassis
 * harness OVN): it removes only ports of ours that NB shows gone, leaves
 * everything when NB shows nothing of this host (an empty NB is no proof),
 * and a link it cannot delete neither stops it nor fails start-up.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import type { DriverConfig } from '../../src/config.js';
import { HostPorts } from '../../src/host/host-ports.js';
import { createRunner, type Runner } from '../../src/host/exec.js';
import { Links } from '../../src/host/links.js';
import { hostIfName, peerIfName } from '../../src/host/names.js';
import { Ovs } from '../../src/host/ovs.js';
import { startDriver, type RunningDriver } from '../../src/service.js';
import { testDriverConfig } from '../harness/driver-config.js';
import { captureLog, LEVEL } from '../harness/driver-log.js';
import { createNetns, deleteNetns, linkExists } from '../harness/netns.js';
import { startOvnStack, type OvnStack } from '../harness/ovn-stack.js';
import { startOvsdbServer } from '../harness/ovsdb-server.js';
import { callPlugin } from '../harness/plugin-client.js';
import { run } from '../harness/process.js';

let stack: OvnStack;
let dir: string;
const portsMade: string[] = [];

const hex = (n: number) => randomBytes(n).toString('hex');
// No gateway ports: this file is about endpoints' ports (host-gateways.ts sweeps its own).
const config = (overrides: Partial<DriverConfig> = {}) => testDriverConfig(stack, dir, { warmPorts: 0, gateway: 'docker', ...overrides });

t.before(async () => {
  stack = await startOvnStack();
  dir = await mkdtemp(path.join(os.tmpdir(), 'ovn-test-sweep-'));
});

/** Unplug these ports by hand: each test starts from a bridge without ports of ours. */
async function removePorts(names: string[]): Promise<void> {
  for (const name of names) {
    await stack?.vsctl('--if-exists', 'del-port', 'br-int', hostIfName(name)).catch(() => undefined);
    await run('ip', ['link', 'del', hostIfName(name)]).catch(() => undefined);
  }
}

t.teardown(async () => {
  await removePorts(portsMade);
  await stack?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** A network with plugged (joined) endpoints at these addresses, made through the driver's socket; returns the endpoint ids. */
async function networkWithEndpoints(driver: RunningDriver, subnet: string, hosts: number[]): Promise<string[]> {
  const call = async (method: string, body: unknown) => {
    const reply = await callPlugin(driver.address, method, body);
    if (reply.status !== 200) throw new Error(`${method}: ${JSON.stringify(reply.body)}`);
    return reply.body;
  };
  const networkId = hex(32);
  const prefix = subnet.replace(/\.0\/24$/, '');
  await call('NetworkDriver.CreateNetwork', { NetworkID: networkId, Options: {}, IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: subnet, Gateway: `${prefix}.1/24` }], IPv6Data: [] });
  const endpoints: string[] = [];
  for (const host of hosts) {
    const id = hex(32);
    portsMade.push(id);
    await call('NetworkDriver.CreateEndpoint', { NetworkID: networkId, EndpointID: id, Interface: { Address: `${prefix}.${host}/24`, AddressIPv6: '', MacAddress: '' }, Options: {} });
    await call('NetworkDriver.Join', { NetworkID: networkId, EndpointID: id, SandboxKey: `/var/run/docker/netns/${id.slice(0, 12)}`, Options: {} });
    endpoints.push(id);
  }
  return endpoints;
}

const onBridge = async (portName: string) => (await stack.vsctl('list-ports', 'br-int')).split('\n').includes(hostIfName(portName));

t.test('a driver started against an empty NB removes no veth, and says why', async (t) => {
  const first = await startDriver(config(), pino({ level: 'warn' }));
  const endpoints = await networkWithEndpoints(first, '10.191.0.0/24', [2, 3]);
  await first.close();
  t.teardown(() => removePorts(endpoints));

  // The same host, its NB replaced by a fresh one (a wrong --ovn-nb, a restore from before these containers).
  const empty = await startOvsdbServer({ schema: 'nb' });
  t.teardown(() => empty.stop());
  const { log, entries } = captureLog();
  const second = await startDriver(config({ nbRemote: empty.unixRemote }), log);
  await second.close();

  for (const id of endpoints) {
    t.ok(await onBridge(id), `${hostIfName(id)} is still on br-int`);
    t.ok(await linkExists(hostIfName(id)), 'with its veth');
  }
  const warning = entries.find((e) => e.level === LEVEL.warn && /missing from the OVN Northbound database/.test(e.msg ?? ''));
  t.ok(warning, 'a warning says why they stay');
  t.equal(warning?.count, 2, 'naming how many');
  t.match(warning?.msg, /2 port\(s\).*--ovn-nb.*ovn-docker-driver cleanup/, 'and what to do');

  // Back on the right NB, they are this host's live ports: kept, and nothing else to sweep.
  const { log: againLog, entries: again } = captureLog();
  const third = await startDriver(config(), againLog);
  await third.close();
  for (const id of endpoints) t.ok(await onBridge(id), `${hostIfName(id)} kept with the right NB`);
  t.match(again.find((e) => e.msg === 'reconciled host ports with OVN'), { ports: 0, links: 0, failed: 0, kept: 0 }, 'and nothing else to sweep');
});

t.test('a link that cannot be deleted fails neither the sweep nor start-up; the truly orphaned ports go', async (t) => {
  const first = await startDriver(config(), pino({ level: 'warn' }));
  const endpoints = await networkWithEndpoints(first, '10.192.0.0/24', [2, 3, 4]);
  const [kept, stubborn, orphan] = endpoints;
  await first.close();
  t.teardown(() => removePorts(endpoints));
  // While the driver is down, two of the network's ports go from NB; the network and `kept` stay.
  await stack.nbctl('lsp-del', stubborn!);
  await stack.nbctl('lsp-del', orphan!);

  // `ip link del` of the stubborn veth fails, as for a device the kernel will not delete.
  const bin = path.join(dir, 'bin');
  await mkdir(bin, { recursive: true });
  const realIp = (await run('sh', ['-c', 'command -v ip'])).stdout.trim();
  await writeFile(
    path.join(bin, 'ip'),
    `#!/bin/sh\nif [ "$*" = "link del dev ${hostIfName(stubborn!)}" ]; then echo 'RTNETLINK answers: Operation not permitted' >&2; exit 2; fi\nexec ${realIp} "$@"\n`,
  );
  await chmod(path.join(bin, 'ip'), 0o755);
  const { log, entries } = captureLog();
  const pathBefore = process.env.PATH;
  process.env.PATH = `${bin}:${pathBefore ?? ''}`;
  let second: RunningDriver;
  try {
    second = await startDriver(config(), log);
  } finally {
    process.env.PATH = pathBefore;
  }
  t.teardown(() => second.close());
  t.pass('the driver started');

  t.notOk(await onBridge(orphan!), 'the orphaned port is off br-int');
  t.notOk(await linkExists(hostIfName(orphan!)), 'and its veth deleted');
  t.notOk(await onBridge(stubborn!), 'the stubborn port is off br-int as well');
  t.ok(await linkExists(hostIfName(stubborn!)), 'its veth would not go');
  t.ok(await onBridge(kept!), 'the live port stays');
  t.ok(await linkExists(hostIfName(kept!)), 'with its veth');
  t.ok(
    entries.some((e) => e.level === LEVEL.warn && e.port === hostIfName(stubborn!) && /cannot delete link/.test(e.msg ?? '')),
    'the failure is logged, naming the port',
  );
  t.match(entries.find((e) => e.msg === 'reconciled host ports with OVN'), { ports: 2, links: 1, failed: 1, kept: 0 }, 'and counted');
  t.equal((await callPlugin(second.address, 'Plugin.Activate')).status, 200, 'the driver serves');
});

t.test('HostPorts.reconcile: a port is gone when NB shows its switch without it; a veth pair off the bridge goes only when NB knows this host', async (t) => {
  const runner = createRunner();
  const { log, entries } = captureLog();
  const host = new HostPorts(new Links(runner), new Ovs({ runner, db: stack.ovsRemote }), 'br-int', log);
  const networkId = hex(32);
  const port = hex(32);
  portsMade.push(port);
  await host.plug({ portName: port, mac: '02:00:00:19:30:02', mtu: 1442, endpointId: port, networkId });
  const nothingLive = () => new Set<string>();

  t.match(await host.reconcile(nothingLive), { ports: 0, links: 0, failed: 0, kept: 1 }, 'no live port, no word from NB: kept');
  t.ok(await onBridge(port), 'still plugged');
  t.ok(entries.some((e) => e.level === LEVEL.warn && e.count === 1), 'with a warning');

  t.match(await host.reconcile(nothingLive, () => ({ hostKnown: false, hasNetwork: (id) => id !== networkId })), { kept: 1 }, 'another switch alive: kept');
  t.ok(await onBridge(port), 'still plugged');

  // A veth pair of ours that never reached the bridge (a crash between creating and plugging it).
  const stray = hex(32);
  portsMade.push(stray);
  await run('ip', ['link', 'add', hostIfName(stray), 'type', 'veth', 'peer', 'name', peerIfName(stray)]);

  t.match(await host.reconcile(nothingLive, () => ({ hostKnown: false, hasNetwork: (id) => id === networkId })), { ports: 1, links: 1, failed: 0, kept: 1 }, "its switch alive without it: removed");
  t.notOk(await onBridge(port), 'off br-int');
  t.notOk(await linkExists(hostIfName(port)), 'veth deleted');
  t.ok(await linkExists(hostIfName(stray)), 'the pair off the bridge stays while NB shows nothing of this host');
  t.ok(entries.some((e) => Array.isArray(e.links) && e.links.includes(hostIfName(stray))), 'and is logged');

  // One whose container end is in a container, and one whose port NB has: not leftovers.
  const inContainer = hex(32);
  const pending = hex(32);
  portsMade.push(inContainer, pending);
  const ns = await createNetns();
  t.teardown(() => deleteNetns(ns));
  await run('ip', ['link', 'add', hostIfName(inContainer), 'type', 'veth', 'peer', 'name', peerIfName(inContainer)]);
  await run('ip', ['link', 'set', peerIfName(inContainer), 'netns', ns]);
  await run('ip', ['link', 'add', hostIfName(pending), 'type', 'veth', 'peer', 'name', peerIfName(pending)]);

  t.match(await host.reconcile(() => new Set([pending]), () => ({ hostKnown: true, hasNetwork: () => true })), { ports: 0, links: 1, failed: 0, kept: 0 }, 'NB knows this host: the pair is removed');
  t.notOk(await linkExists(hostIfName(stray)), 'both ends of it');
  t.notOk(await linkExists(peerIfName(stray)), 'gone');
  t.ok(await linkExists(hostIfName(inContainer)), 'a pair whose other end is in a container stays');
  t.ok(await linkExists(hostIfName(pending)), 'so does the pair of a port NB has (being plugged)');
});

t.test("HostPorts.removeAll (cleanup): a link it cannot delete does not keep the others; then the call fails, saying so", async (t) => {
  const real = createRunner();
  const [stubborn, other] = [hex(32), hex(32)];
  portsMade.push(stubborn, other);
  const refusing: Runner = {
    run: (command, args, options) =>
      command === 'ip' && args.join(' ') === `link del dev ${hostIfName(stubborn)}`
        ? Promise.reject(new Error('RTNETLINK answers: Operation not permitted'))
        : real.run(command, args, options),
  };
  const host = new HostPorts(new Links(refusing), new Ovs({ runner: refusing, db: stack.ovsRemote }), 'br-int', pino({ level: 'silent' }));
  await host.plug({ portName: stubborn, mac: '02:00:00:19:30:03', mtu: 1442 });
  await host.plug({ portName: other, mac: '02:00:00:19:30:04', mtu: 1442 });

  await t.rejects(host.removeAll(), /1 removal step\(s\) failed/);
  t.notOk(await onBridge(other), 'the other port is off br-int');
  t.notOk(await linkExists(hostIfName(other)), 'and its veth deleted');
  t.notOk(await onBridge(stubborn), 'the stubborn one is off br-int');
  t.ok(await linkExists(hostIfName(stubborn)), 'its veth is what stayed');
});

t.test("a driver started against an empty NB keeps this host's gateway ports too, and says why", async (t) => {
  const first = await startDriver(config({ gateway: 'host' }), pino({ level: 'warn' }));
  const endpoints = await networkWithEndpoints(first, '10.194.0.0/24', [2]);
  await first.close();
  const gatewayPort = async () => (await stack.vsctl('list-ports', 'br-int')).split('\n').filter((p) => /^ovg[0-9a-f]{12}$/.test(p));
  const [gateway] = await gatewayPort();
  t.ok(gateway, 'the network has its gateway port on this host');
  t.teardown(async () => {
    await removePorts(endpoints);
    if (gateway) await stack.vsctl('--if-exists', 'del-port', 'br-int', gateway).catch(() => undefined);
  });

  const empty = await startOvsdbServer({ schema: 'nb' });
  t.teardown(() => empty.stop());
  const { log, entries } = captureLog();
  const second = await startDriver(config({ gateway: 'host', nbRemote: empty.unixRemote }), log);
  await second.close();
  t.same(await gatewayPort(), [gateway], 'the gateway port stays');
  t.ok(
    entries.find((e) => e.level === LEVEL.warn && /gateway ports of ours are on the bridge: keeping them/.test(e.msg ?? '')),
    'a warning says why, and what to do',
  );
  const third = await startDriver(config({ gateway: 'host' }), pino({ level: 'warn' }));
  await third.close();
  t.same(await gatewayPort(), [gateway], 'and it is still the live network\'s gateway on the right NB');
});
