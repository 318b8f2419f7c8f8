/**
 * The publisher's bookkeeping (src/publish/port-publisher.ts) against a real
 * Open_vSwitch database (a bare ovsdb-server: no vswitchd is needed to keep
 * external_ids): a retried Program keeps its ports, a new one replaces
 * them, conflicts are refused in Docker's words and change nothing, a holder
 * whose veth is gone gives its port up, Revoke is idempotent, and a new
 * publisher (a restarted driver) puts back what the interfaces record. The
 * firewall and the links are stand-ins that record what they are told:
 * the rules themselves are test/host/firewall-publish.test.ts's.
 */
import t from 'tap';
import { pino } from 'pino';
import { createRunner } from '../../src/host/exec.js';
import type { HostFirewall, PublishedRule } from '../../src/host/firewall.js';
import type { Links } from '../../src/host/links.js';
import { hostIfName } from '../../src/host/names.js';
import { Ovs } from '../../src/host/ovs.js';
import { Keys } from '../../src/ovn/keys.js';
import { PortPublisher, type PublishTarget } from '../../src/publish/port-publisher.js';
import { portRequests } from '../../src/publish/port-map.js';
import { startOvsdbServer } from '../harness/ovsdb-server.js';
import { testDriverConfig } from '../harness/driver-config.js';
import { publishedPorts } from '../../src/ports.js';

const server = await startOvsdbServer({ schema: 'vswitch' });
t.teardown(() => server.stop());
const ovs = new Ovs({ runner: createRunner(), db: server.unixRemote });
const vsctl = (...args: string[]) => createRunner().run('ovs-vsctl', [`--db=${server.unixRemote}`, '--no-wait', ...args]).then((r) => r.stdout.trim());
await vsctl('init');
await vsctl('add-br', 'br-test');

let rules: PublishedRule[] = [];
let rewrites = 0;
const firewall = {
  publish: async (r: readonly PublishedRule[]) => {
    rewrites++;
    rules = [...r];
  },
} as unknown as HostFirewall;
const gone = new Set<string>();
const links = { exists: async (name: string) => !gone.has(name) } as unknown as Links;
const publishers: PortPublisher[] = [];
const publisher = () => {
  const p = new PortPublisher(ovs, links, firewall, 'br-test', { low: 41000, high: 41009 }, pino({ level: 'silent' }));
  publishers.push(p);
  return p;
};
t.teardown(() => publishers.forEach((p) => p.close()));

let next = 1;
/** An endpoint with its veth's port on the bridge, as Join leaves it. */
async function endpoint(): Promise<PublishTarget> {
  const id = (next++).toString(16).padStart(12, '0').padEnd(64, 'a');
  await vsctl('add-port', 'br-test', hostIfName(id), '--', 'set', 'Interface', hostIfName(id), 'type=internal');
  return { endpointId: id, portName: id, networkId: 'net1', containerIp: `10.9.0.${next}`, ifName: 'ovg000000000001', subnet: '10.9.0.0/24' };
}
// Loopback only, and high ports: the test holds real sockets.
const map = (...entries: [proto: number, hostPort: number, hostPortEnd: number, port: number][]) =>
  portRequests({ 'com.docker.network.portmap': entries.map(([Proto, HostPort, HostPortEnd, Port]) => ({ Proto, IP: '', Port, HostIP: '127.0.0.1', HostPort, HostPortEnd })) });
const recorded = async (ep: PublishTarget) => vsctl('--if-exists', 'get', 'Interface', hostIfName(ep.portName), `external_ids:"${Keys.published}"`);

const p = publisher();
const a = await endpoint();
const b = await endpoint();

t.test('Program publishes, a retry keeps its ports, a new map replaces them', async (t) => {
  const first = await p.program(a, map([6, 42080, 42080, 80], [17, 42053, 42053, 53], [6, 0, 0, 8080]));
  t.same(first.map((x) => [x.protocol, x.hostPort, x.containerPort]), [['tcp', 42080, 80], ['udp', 42053, 53], ['tcp', 41000, 8080]], 'the fixed ports, and -P from the ephemeral range');
  t.same(rules.map((r) => `${r.protocol} ${r.hostIp}:${r.hostPort}->${r.containerIp}:${r.containerPort} ${r.ifName}`), [
    `tcp 127.0.0.1:42080->${a.containerIp}:80 ovg000000000001`,
    `udp 127.0.0.1:42053->${a.containerIp}:53 ovg000000000001`,
    `tcp 127.0.0.1:41000->${a.containerIp}:8080 ovg000000000001`,
  ]);
  t.match(await recorded(a), /42080/, "recorded on the endpoint's OVS interface");
  const writes = rewrites;
  const again = await p.program(a, map([6, 0, 0, 8080], [6, 42080, 42080, 80], [17, 42053, 42053, 53]));
  t.same(again.map((x) => x.hostPort).sort(), [41000, 42053, 42080], 'the same map again (any order): the same ports, -P included');
  t.equal(rewrites, writes, 'and no firewall rewrite for it');
  const idle = await endpoint();
  t.same(await p.program(idle, []), [], 'an endpoint publishing nothing, programmed with no ports (every container start)');
  t.equal(rewrites, writes, 'costs no firewall rewrite either');
  const replaced = await p.program(a, map([6, 42081, 42081, 80]));
  t.same(replaced.map((x) => x.hostPort), [42081], 'a new map replaces the old one');
  t.equal(rules.length, 1, 'and only its rules remain');
});

t.test('conflicts: refused in Docker words, nothing changes', async (t) => {
  const err = await p.program(b, map([6, 42081, 42081, 80])).catch((e: Error) => e);
  t.match((err as Error).message, /^Bind for 127\.0\.0\.1:42081 failed: port is already allocated$/);
  t.same(p.published(b.endpointId), [], 'nothing published for the refused endpoint');
  t.equal(rules.length, 1, 'the rules are as before');
  t.equal(await recorded(b), '', 'nothing recorded');
  const range = await p.program(b, map([6, 42081, 42083, 80]));
  t.same(range.map((x) => x.hostPort), [42082], 'a range: the first free port of it');
  t.same((await p.program(b, map([17, 42081, 42081, 80]))).map((x) => x.hostPort), [42081], 'udp and tcp are apart');
});

t.test('a holder whose veth is gone gives its port up; Revoke is idempotent', async (t) => {
  gone.add(hostIfName(a.portName));
  const c = await endpoint();
  t.same((await p.program(c, map([6, 42081, 42081, 80]))).map((x) => x.hostPort), [42081], "the dead holder's port is taken over");
  t.same(p.published(a.endpointId), [], 'the dead holder publishes nothing');
  t.equal(await recorded(a), '', 'nor records anything');
  t.ok(await p.revoke(c.endpointId), 'revoked');
  t.notOk(await p.revoke(c.endpointId), 'twice: nothing to do');
  t.notOk(await p.revoke('f'.repeat(64)), 'an unknown endpoint: nothing to do');
  t.notOk(rules.some((r) => r.containerIp === c.containerIp), 'its rules are gone');
});

t.test('a restarted driver puts back what the interfaces record', async (t) => {
  const before = p.published(b.endpointId);
  p.close();
  rules = [];
  const restarted = publisher();
  t.equal(await restarted.restore(), 1, 'one endpoint publishes');
  t.same(restarted.published(b.endpointId), before, 'the same ports');
  t.same(rules.map((r) => r.hostPort), [42081], 'and the same rules');
  const err = await restarted.program(a, map([17, 42081, 42081, 80])).catch((e: Error) => e);
  t.match((err as Error).message, /port is already allocated/, 'held again: conflicts still found');
});

t.test('`ovn-docker-driver ports` lists them (without an engine: by endpoint id)', async (t) => {
  const config = testDriverConfig({ nbRemote: 'unix:/nonexistent', ovsRemote: server.unixRemote }, '/tmp', { bridge: 'br-test', dockerSocket: undefined });
  const text = await publishedPorts(config);
  t.equal(text, `CONTAINER\tPUBLISHED\n${b.endpointId.slice(0, 12)}\t127.0.0.1:42081->${b.containerIp}:80/udp`);
});

t.test('after the start-up sweep removed an endpoint, apply() drops what it published', async (t) => {
  const d = await endpoint();
  const keeper = publisher();
  await keeper.program(d, map([6, 42090, 42090, 80]));
  keeper.close();
  const restarted = publisher();
  await restarted.restore();
  t.same(restarted.published(d.endpointId).map((x) => x.hostPort), [42090], 'restored from its record');
  await vsctl('del-port', 'br-test', hostIfName(d.portName)); // what the sweep does to a leftover
  await restarted.apply();
  t.same(restarted.published(d.endpointId), [], 'dropped once its port is gone');
  t.notOk(rules.some((r) => r.hostPort === 42090), 'and so are its rules');
  const e = await endpoint();
  t.same((await restarted.program(e, map([6, 42090, 42090, 80]))).map((x) => x.hostPort), [42090], 'its port is free again');
});

t.test('host addresses by family: IPv6 ones get no rule (forwarded in user space), 0.0.0.0 is every IPv4 one', async (t) => {
  const pub = publisher();
  const ep = await endpoint();
  const other = await endpoint();
  const at = (HostIP: string, HostPort: number, Proto = 6) => portRequests({ 'com.docker.network.portmap': [{ Proto, IP: '', Port: 80, HostIP, HostPort, HostPortEnd: HostPort }] });
  const mine = () => rules.filter((r) => r.containerIp === ep.containerIp).map((r) => `${r.protocol} ${r.hostIp}:${r.hostPort}`);
  t.same((await pub.program(ep, [...at('::1', 42180), ...at('127.0.0.1', 42181)])).map((x) => x.hostIp), ['::1', '127.0.0.1'], 'both published');
  t.same(mine(), ['tcp 127.0.0.1:42181'], 'only the IPv4 one is a firewall rule');
  t.same(pub.published(ep.endpointId).map((x) => x.hostIp), ['::1', '127.0.0.1']);
  await t.rejects(pub.program(other, at('::', 42180)), { message: 'Bind for [::]:42180 failed: port is already allocated' }, '[::] meets [::1]');
  t.same((await pub.program(other, at('127.0.0.1', 42180))).map((x) => x.hostPort), [42180], 'IPv4 of the same port number is apart');
  await t.rejects(pub.program(ep, [...at('::1', 42180), ...at('0.0.0.0', 42180)]), { message: /Bind for 0\.0\.0\.0:42180 failed/ }, '0.0.0.0 meets 127.0.0.1');
  await t.rejects(pub.program(ep, at('::1', 42182, 132)), { message: /SCTP is published on IPv4 host addresses only/ }, 'SCTP on IPv6 refused');
  t.same(pub.published(ep.endpointId).map((x) => x.hostIp), ['::1', '127.0.0.1'], 'refusals change nothing');
  t.ok(await pub.revoke(other.endpointId));
  await pub.program(ep, at('0.0.0.0', 42183));
  t.same(mine(), ['tcp :42183'], "0.0.0.0 is the firewall's every-address rule");
  t.ok(await pub.revoke(ep.endpointId));
});
