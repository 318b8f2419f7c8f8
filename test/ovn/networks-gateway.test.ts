/**
 * Per-host decisions on shared networks (issue 9): each Docker network on a
 * pool's switch keeps its own gateway choice (-o ovn.gateway, the driver's
 * route-check fallback, --internal), whichever host created the switch. Two
 * OvsdbClients on one bare NB ovsdb-server stand for two hosts; no OVN
 * daemons are needed.
 */
import t, { type Test } from 'tap';
import { useNbHosts, type NbHost } from '../harness/nb-hosts.js';
import { Keys } from '../../src/ovn/keys.js';
import { type NetworkRecord, type NetworkSpec } from '../../src/ovn/networks.js';
import { HostGateways } from '../../src/host/host-gateways.js';

type Host = NbHost;

const [a, b] = (await useNbHosts(t, ['host-a', 'host-b'])) as [Host, Host];

type Choice = 'host' | 'docker' | 'internal';

/** The network `networkId` of host `h` on pool 10.<n>.0.0/24 (gateway 10.<n>.0.1), as translate.ts makes it. */
function networkSpec(h: Host, n: number, networkId: string, choice: Choice): NetworkSpec {
  return {
    networkId,
    ipv4: [{ subnet: `10.${n}.0.0/24`, gateway: `10.${n}.0.1` }],
    ipv6: [],
    mtu: 1442,
    internal: choice === 'internal',
    options: { 'ovn.gateway': choice === 'docker' ? 'docker' : 'host' },
    pools: { v4: `docker_pool_10.${n}.0.0_24` },
    chassis: h.chassis,
  };
}

function until<T>(h: Host, probe: () => T | undefined, what = 'replica update'): Promise<T> {
  return h.nb.replica.waitFor(probe, { timeoutMs: 5000, what });
}

/** What a host's driver acts on: the network's record in that host's replica. */
async function seen(h: Host, networkId: string): Promise<NetworkRecord> {
  return until(h, () => h.networks.findNetwork(networkId), `${h.chassis} sees network ${networkId}`);
}

/** The switch's external_ids, read from the server, not a replica. */
async function switchIds(name: string): Promise<Record<string, string>> {
  const tx = a.nb.newTransaction();
  tx.select('Logical_Switch', [['name', '==', name]], ['external_ids']);
  const [row] = (await a.nb.transact(tx)).rowsOf(0);
  return Object.fromEntries((row?.external_ids as ['map', [string, string][]] | undefined)?.[1] ?? []);
}

/** Host A creates the pool's switch with its choice, host B attaches with its own. */
async function shared(t: Test, n: number, choiceA: Choice, choiceB: Choice): Promise<{ netA: string; netB: string; switchName: string }> {
  const netA = `gwa${n}`;
  const netB = `gwb${n}`;
  const created = await a.networks.ensureNetwork(networkSpec(a, n, netA, choiceA));
  await until(b, () => b.nb.replica.findOne('Logical_Switch', 'name', created.name));
  await b.networks.ensureNetwork(networkSpec(b, n, netB, choiceB));
  t.equal((await switchIds(created.name))[`${Keys.networkPrefix}${netB}`], b.chassis, "host B attached to host A's switch");
  return { netA, netB, switchName: created.name };
}

t.test("a host attaching with -o ovn.gateway=docker keeps docker_gwbridge; the creator keeps its host gateway", async (t) => {
  const { netA, netB } = await shared(t, 41, 'host', 'docker');
  t.equal((await seen(a, netA)).options['ovn.gateway'], 'host');
  t.ok(HostGateways.wanted(await seen(a, netA)), 'host A is the gateway of its containers');
  t.equal((await seen(b, netB)).options['ovn.gateway'], 'docker');
  t.notOk(HostGateways.wanted(await seen(b, netB)), 'host B is not');
  // Each host reads the other's network with that network's choice too.
  t.notOk(HostGateways.wanted(await seen(a, netB)));
  t.ok(HostGateways.wanted(await seen(b, netA)));
});

t.test("a host attaching with the host gateway gets one even when the creator chose docker_gwbridge", async (t) => {
  const { netA, netB } = await shared(t, 42, 'docker', 'host');
  t.notOk(HostGateways.wanted(await seen(a, netA)));
  t.ok(HostGateways.wanted(await seen(b, netB)));
});

t.test('an --internal network has no gateway on its host, whatever the other host chose', async (t) => {
  const { netA, netB } = await shared(t, 43, 'host', 'internal');
  t.ok(HostGateways.wanted(await seen(a, netA)));
  t.equal((await seen(b, netB)).internal, true);
  t.notOk(HostGateways.wanted(await seen(b, netB)), 'no host gateway for the internal network');
  const other = await shared(t, 44, 'internal', 'host');
  t.notOk(HostGateways.wanted(await seen(a, other.netA)));
  t.equal((await seen(b, other.netB)).internal, false);
  t.ok(HostGateways.wanted(await seen(b, other.netB)), 'the creator being internal does not take the gateway from the other host');
});

t.test('the choice is written with the attachment, kept when CreateNetwork is re-run, and removed with it', async (t) => {
  const { netA, netB, switchName } = await shared(t, 45, 'host', 'docker');
  const ids = await switchIds(switchName);
  t.equal(ids[`${Keys.gatewayPrefix}${netA}`], 'host');
  t.equal(ids[`${Keys.gatewayPrefix}${netB}`], 'docker');
  // A retry (the engine's, or after a lost reply) finds the network attached and writes nothing.
  await b.networks.ensureNetwork(networkSpec(b, 45, netB, 'host'));
  t.same(await switchIds(switchName), ids, 'a re-run changes nothing');

  t.equal(await b.networks.deleteNetwork(netB), true);
  const left = await switchIds(switchName);
  t.notOk(`${Keys.networkPrefix}${netB}` in left, "host B's attachment is gone");
  t.notOk(`${Keys.gatewayPrefix}${netB}` in left, 'and so is its gateway choice');
  t.equal(left[`${Keys.gatewayPrefix}${netA}`], 'host', "host A's stays");
  await until(a, () => (a.networks.findNetwork(netB) ? undefined : true));
  t.equal(await a.networks.deleteNetwork(netA), true);
  t.same(await switchIds(switchName), {}, 'the last network out deletes the switch');
});

t.test('two hosts creating one pool at once each keep their own choice', async (t) => {
  // Both transactions are built before either commits: the loser re-runs as an attachment.
  const [ra, rb] = await Promise.all([
    a.networks.ensureNetwork(networkSpec(a, 46, 'gwa46', 'host')),
    b.networks.ensureNetwork(networkSpec(b, 46, 'gwb46', 'docker')),
  ]);
  t.equal(ra.uuid, rb.uuid, 'one switch');
  t.equal(ra.options['ovn.gateway'], 'host');
  t.equal(rb.options['ovn.gateway'], 'docker');
});

t.test('an attachment from before per-network choices follows the stored options', async (t) => {
  const { netA, switchName } = await shared(t, 47, 'host', 'docker');
  const key = `${Keys.gatewayPrefix}${netA}`;
  // As an older driver wrote it: no gateway key for the attachment.
  await a.nb.transaction((tx, replica) => {
    const ls = replica.findOne('Logical_Switch', 'name', switchName)!;
    tx.mutate('Logical_Switch', [['_uuid', '==', ls._uuid]], [['external_ids', 'delete', [key]]]);
  });
  await until(a, () => {
    const ids = a.nb.replica.findOne('Logical_Switch', 'name', switchName)?.external_ids;
    return ids instanceof Map && !ids.has(key) ? true : undefined;
  });
  const record = await seen(a, netA);
  t.equal(record.options['ovn.gateway'], 'host', "the creator's stored choice");
  t.ok(HostGateways.wanted(record));
});
