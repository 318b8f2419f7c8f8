/**
 * The names publisher (src/driver/dns-publisher.ts) against a bare NB
 * ovsdb-server with two hosts, and a stand-in for the engine's API: on a
 * switch of one host nothing is written; once another host's port joins,
 * the batch that follows publishes this host's names from the engine (on
 * the ports and in the switch's DNS row), as does the start-up sync of a
 * publisher started after it joined.
 */
import t from 'tap';
import type { ContainerInfo, DockerApi, NetworkEvent } from '../../src/docker/api.js';
import { DnsPublisher } from '../../src/driver/dns-publisher.js';
import { externalIds } from '../../src/ovn/external-ids.js';
import { Keys } from '../../src/ovn/keys.js';
import { captureLog, type LogEntry } from '../harness/driver-log.js';
import type { NbHost } from '../harness/nb-hosts.js';
import { waitFor } from '../harness/process.js';
import { endpoint, useSharedSwitch } from '../ovn/model-fixture.js';
import { rowNamed, select, until, wireMap, wireSet } from '../ovn/nb-reads.js';

const { a, b, sharedNetwork } = await useSharedSwitch(t);
const TIMING = { firstDelayMs: 20, spacingMs: 50, maxSpacingMs: 200 };

/** The engine's API as the publisher reads it: the containers given, an event stream that opens at once. */
/** Whether the stand-in engine lists containers; while not, it fails as an unreachable API does. */
interface EngineState {
  listing: boolean;
}

function fakeEngine(containers: ContainerInfo[], state: EngineState): DockerApi {
  const api = {
    inspectContainer: async (id: string) => containers.find((c) => c.id === id),
    containersOn: async (networkId: string) => {
      if (!state.listing) throw new Error('engine API: connection refused');
      return containers.filter((c) => c.networks.some((n) => n.NetworkID === networkId)).map((c) => c.id);
    },
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

function startPublisher(h: NbHost, containers: ContainerInfo[], state: EngineState = { listing: true }): { publisher: DnsPublisher; logged: LogEntry[] } {
  const { log, entries } = captureLog('debug');
  const publisher = new DnsPublisher(fakeEngine(containers, state), h.networks, h.chassis, log, TIMING);
  publisher.start();
  return { publisher, logged: entries };
}

/** The first of the publisher's log entries whose message matches, once there is one. */
function untilLogged(logged: LogEntry[], msg: RegExp): Promise<LogEntry> {
  return waitFor(() => logged.find((e) => msg.test(e.msg ?? '')), { timeoutMs: 5000, intervalMs: 10, what: `a log line ${String(msg)}` });
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

t.test("a host alone on the switch writes nothing; another host's port joining brings this host's names, from the engine", async (t) => {
  const { netA, netB, switchName } = await sharedNetwork(31);
  await endpoint(a, netA, 'pub-a', '10.31.0.2/24');
  const { publisher, logged } = startPublisher(a, [container('c-a', 'web-a', netA, 'pub-a')]);
  t.teardown(() => publisher.stop());
  t.equal((await untilLogged(logged, /names left to Docker/)).endpoints, 1, 'the start-up sync found the container, on a switch of this host alone');
  t.equal(await recordedOnServer('pub-a'), undefined, 'no names on its port');
  t.equal(await dnsRecords(switchName), undefined, 'no DNS row');

  await endpoint(b, netB, 'pub-b', '10.31.0.3/24');
  await untilRecord(a, 'web-a');
  t.same(await dnsRecords(switchName), { 'web-a': '10.31.0.2', 'web-a-alias': '10.31.0.2' }, "host B's port joined: the next batch wrote host A's names");
  t.equal(await recorded(a, 'pub-a'), 'web-a web-a-alias', 'and recorded them on the port');
});

t.test('a publisher started after another host joined publishes at start-up', async (t) => {
  const { netA, netB, switchName } = await sharedNetwork(32);
  await endpoint(a, netA, 'restart-a', '10.32.0.2/24');
  await endpoint(b, netB, 'restart-b', '10.32.0.3/24');
  await until(a.nb, () => a.networks.findEndpoint('restart-b'));
  const { publisher } = startPublisher(a, [container('c-r', 'before', netA, 'restart-a')]);
  t.teardown(() => publisher.stop());
  await untilRecord(a, 'before');
  t.same(await dnsRecords(switchName), { before: '10.32.0.2', 'before-alias': '10.32.0.2' });
});

t.test('the engine failing to list containers when another host joins: the publisher tries again', async (t) => {
  const { netA, netB, switchName } = await sharedNetwork(33);
  await endpoint(a, netA, 'retry-a', '10.33.0.2/24');
  // The engine cannot list containers at start-up, nor for the join.
  const engine = { listing: false };
  const { publisher, logged } = startPublisher(a, [container('c-t', 'again', netA, 'retry-a')], engine);
  t.teardown(() => publisher.stop());
  const failures = () => logged.filter((e) => /cannot list the containers/.test(e.msg ?? '')).length;
  // The start-up sync tries each network of this host (earlier tests' too) once.
  const atStart = a.networks.localNetworkIds(a.chassis).length;
  await waitFor(() => failures() >= atStart, { timeoutMs: 5000, intervalMs: 10, what: "the start-up sync's failed listings" });
  await endpoint(b, netB, 'retry-b', '10.33.0.3/24');
  await waitFor(() => failures() > atStart, { timeoutMs: 5000, intervalMs: 10, what: 'a failed listing for the join' });
  // Back, with no NB change to come: only the publisher's own retry publishes the names now.
  engine.listing = true;
  await untilRecord(a, 'again');
  t.same(await dnsRecords(switchName), { again: '10.33.0.2', 'again-alias': '10.33.0.2' });
  t.ok(failures() > atStart, 'after a failed listing for the join');
});

/** The names the endpoint's port recorded, read from the server. */
async function recordedOnServer(endpointId: string): Promise<string | undefined> {
  const name = a.networks.findEndpoint(endpointId)?.name;
  const port = name ? await rowNamed(a.nb, 'Logical_Switch_Port', name, ['external_ids']) : undefined;
  return port ? wireMap(port.external_ids).get(Keys.dnsNames) : undefined;
}
