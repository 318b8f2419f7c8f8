/**
 * The Docker API reader against a scripted engine on a unix socket (pure
 * protocol logic; the real engines are in test/e2e): it waits for an engine
 * that starts later, reads events line by line, and inspects containers.
 */
import t from 'tap';
import http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DockerApi, type NetworkEvent } from '../../src/docker/api.js';

const CONTAINER = 'c'.repeat(64);
const NETWORK = 'n'.repeat(64);

t.test('follows events from an engine that starts after it, and inspects containers', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ovn-test-dockerapi-'));
  const socket = path.join(dir, 'docker.sock');
  const api = new DockerApi(socket);
  const stop = new AbortController();
  const events: NetworkEvent[] = [];
  let connected = 0;
  let errors = 0;
  const following = api.followNetworkEvents({
    onEvent: (e) => events.push(e),
    onConnected: () => connected++,
    onError: () => errors++,
    signal: stop.signal,
  });

  await new Promise((r) => setTimeout(r, 300));
  t.ok(errors >= 1, 'no engine yet: an error, and it keeps trying');
  const server = http.createServer((req, res) => {
    if (req.url?.startsWith('/events')) {
      t.match(decodeURIComponent(req.url), /"type":\["network"\]/, 'asks only for network events');
      res.writeHead(200, { 'Content-Type': 'application/json' });
      // Split mid-line on purpose; plus an event of another kind and a non-JSON line.
      const line = JSON.stringify({ Type: 'network', Action: 'connect', Actor: { ID: NETWORK, Attributes: { container: CONTAINER } } });
      res.write(`${line.slice(0, 20)}`);
      setTimeout(() => res.write(`${line.slice(20)}\n{"Type":"container","Action":"start"}\nnot json\n`), 20);
      return;
    }
    if (req.url === `/containers/${CONTAINER}/json`) {
      res.writeHead(200);
      res.end(JSON.stringify({
        Id: CONTAINER,
        Name: '/web',
        NetworkSettings: { Networks: { shared: { NetworkID: NETWORK, EndpointID: 'e'.repeat(64), IPAddress: '10.1.0.2', GlobalIPv6Address: '', Aliases: ['w'] } } },
      }));
      return;
    }
    res.writeHead(404);
    res.end('{}');
  });
  await new Promise<void>((r) => server.listen(socket, r));
  t.teardown(async () => {
    stop.abort();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await following;
    await rm(dir, { recursive: true, force: true });
  });

  const deadline = Date.now() + 5000;
  while (events.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.equal(connected, 1, 'told when the stream opened');
  t.same(events, [{ action: 'connect', networkId: NETWORK, containerId: CONTAINER }], 'one network event, parsed across chunks');
  const info = await api.inspectContainer(CONTAINER);
  t.same(info, { id: CONTAINER, name: 'web', networks: [{ NetworkID: NETWORK, EndpointID: 'e'.repeat(64), IPAddress: '10.1.0.2', GlobalIPv6Address: '', Aliases: ['w'] }] });
  t.equal(await api.inspectContainer('d'.repeat(64)), undefined, 'unknown container');
  await t.rejects(api.inspectContainer('../etc'), /not a container id/, 'ids are validated before use in a path');
});
