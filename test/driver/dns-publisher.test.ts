/**
 * The names publisher (src/driver/dns-publisher.ts) against a bare NB
 * ovsdb-server with two hosts, and a stand-in for the engine's API: names
 * are recorded on the ports; a switch's DNS row is written once another
 * host's port joins it, by the batch that follows, or by the sync of a
 * publisher started after it joined.
 */
import t from 'tap';
import { pino } from 'pino';
import type { ContainerInfo, DockerApi, NetworkEvent } from '../../src/docker/api.js';
import { DnsPublisher } from '../../src/driver/dns-publisher.js';
import { externalIds } from '../../src/ovn/external-ids.js';
import { Keys } from '../../src/ovn/keys.js';
import type { NbHost } from '../harness/nb-hosts.js';
import { endpoint, useSharedSwitch } from '../ovn/model-fixture.js';
import { rowNamed, select, until, wireMap, wireSet } from '../ovn/nb-reads.js';

const { a, b, sharedNetwork } = await useSharedSwitch(t);
const TIMING = { firstDelayMs: 20, spacingMs: 50, maxSpacingMs: 200 };

/** The engine's API as the publisher reads it: the containers given, an event stream that opens at once. */
function fakeEngine(containers: ContainerInfo[]): DockerApi {
  const api = {
    inspectContainer: async (id: string) => containers.find((c) => c.id === id),
    containersOn: async (networkId: string) => containers.filter((c) => c.networks.some((n) => n.NetworkID === networkId)).map((c) => c.id),
    followNetworkEvents: async (h: { onEvent: (e: NetworkEvent) => void; onConnected: () => void; signal: AbortSignal }) => {
      h.onConnected();
      await new Promise((resolve) => h.signal.addEventListener('abort', resolve, { once: true }));
    },
  };
  return api as unknown as DockerApi;
}

function container(id: string, name: string, networkId: string, endpointId: string): ContainerInfo {
  return { id, name, networks: [{ NetworkID: networkId, EndpointID: endpointId, IPAddress: '', GlobalIPv6Address: '', Aliases: [`${name}-alias`] }] };
}

function startPublisher(h: NbHost, containers: ContainerInfo[]): DnsPublisher {
  const publisher = new DnsPublisher(fakeEngine(containers), h.networks, h.chassis, pino({ level: 'silent' }), TIMING);
  publisher.start();
  return publisher;
}

/** Resolves once `h`'s replica shows the names the endpoint's port recorded. */
function recorded(h: NbHost, endpointId: string): Promise<string> {
  return until(h.nb, () => {
    const name = h.networks.findEndpoint(endpointId)?.name;
    const port = name ? h.nb.replica.findOne('Logical_Switch_Port', 'name', name) : undefined;
    return port ? externalIds(port).get(Keys.dnsNames) : undefined;
  }, `${endpointId}'s names recorded`);
}

/** Resolves once `h`'s replica has a DNS record of `name`. */
function untilRecord(h: NbHost, name: string): Promise<true> {
  const has = () => [...h.nb.replica.rows('DNS')].some((r) => r.records instanceof Map && r.records.has(name));
  return until(h.nb, () => (has() ? true : undefined), `a record of ${name}`);
}

async function dnsRecords(switchName: string): Promise<Record<string, string> | undefined> {
  const refs = wireSet((await rowNamed(a.nb, 'Logical_Switch', switchName, ['dns_records']))?.dns_records) as [string, string][];
  if (refs.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const [, uuid] of refs) for (const [k, v] of wireMap((await select(a.nb, 'DNS', [['_uuid', '==', uuid]], ['records']))[0]?.records)) out[k] = v;
  return out;
}

t.test("names stay on the ports while one host uses the switch; another host's port joining brings the DNS row", async (t) => {
  const { netA, netB, switchName } = await sharedNetwork(31);
  await endpoint(a, netA, 'pub-a', '10.31.0.2/24');
  const publisher = startPublisher(a, [container('c-a', 'web-a', netA, 'pub-a')]);
  t.teardown(() => publisher.stop());
  t.equal(await recorded(a, 'pub-a'), 'web-a web-a-alias', 'the start-up sync recorded the names on the port');
  t.equal(await dnsRecords(switchName), undefined, 'no DNS row: only this host uses the switch');

  await endpoint(b, netB, 'pub-b', '10.31.0.3/24');
  await untilRecord(a, 'web-a');
  t.same(await dnsRecords(switchName), { 'web-a': '10.31.0.2', 'web-a-alias': '10.31.0.2' }, "host B's port joined: the next batch wrote host A's names");
});

t.test('a publisher started after another host joined syncs the row at start-up', async (t) => {
  const { netA, netB, switchName } = await sharedNetwork(32);
  await endpoint(a, netA, 'restart-a', '10.32.0.2/24');
  // Recorded while host A was alone; host B joins while A's publisher is not running.
  await a.networks.publishNames([{ endpointId: 'restart-a', names: ['before'] }], a.chassis);
  t.equal(await dnsRecords(switchName), undefined, 'no DNS row while host A is alone');
  await endpoint(b, netB, 'restart-b', '10.32.0.3/24');
  await until(a.nb, () => a.networks.findEndpoint('restart-b'));
  // No containers to publish: the start-up sync has only the row to bring up to date.
  const publisher = startPublisher(a, []);
  t.teardown(() => publisher.stop());
  await untilRecord(a, 'before');
  t.same(await dnsRecords(switchName), { before: '10.32.0.2' });
});
