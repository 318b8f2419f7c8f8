/**
 * The floor of a remote network plugin, for the benches: a legacy plugin
 * that answers every call at once and only makes a veth in Join (no OVN, no
 * OVS, no IPAM of its own). Used with `--internal` networks, so that the
 * container has one interface and the engine adds no docker_gwbridge, as on
 * our default network. What a container start costs on it is the engine's
 * own cost of a remote network plugin; the benches report their ratio to it.
 *
 *   node --import tsx bench/noop-plugin.ts --socket /run/docker/plugins/noop.sock [--netns NAME]
 *
 * --netns: where its veths are made (the engine's network namespace).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import http from 'node:http';
import { promisify } from 'node:util';

const run = promisify(execFile);

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const socket = arg('socket');
const netns = arg('netns');
if (!socket) throw new Error('usage: noop-plugin.ts --socket PATH [--netns NAME]');

const ip = (...args: string[]) => run('ip', [...(netns ? ['-n', netns] : []), ...args]);
/** The veth pair of an endpoint: its host end, and the end the engine moves into the container. */
const names = (endpointId: string) => {
  const id = createHash('sha256').update(endpointId).digest('hex').slice(0, 10);
  return { host: `nop${id}`, peer: `nopc${id}` };
};

const handlers: Record<string, (body: Record<string, unknown>) => Promise<unknown>> = {
  'Plugin.Activate': async () => ({ Implements: ['NetworkDriver'] }),
  'NetworkDriver.GetCapabilities': async () => ({ Scope: 'local', ConnectivityScope: 'local' }),
  'NetworkDriver.Join': async (body) => {
    const { host, peer } = names(String(body.EndpointID));
    await ip('link', 'add', host, 'type', 'veth', 'peer', 'name', peer);
    await ip('link', 'set', host, 'up');
    return { InterfaceName: { SrcName: peer, DstPrefix: 'eth' } };
  },
  'NetworkDriver.DeleteEndpoint': async (body) => {
    // Gone with the container's namespace as a rule; a Join the engine rolled back leaves it here.
    await ip('link', 'del', names(String(body.EndpointID)).host).catch(() => undefined);
    return {};
  },
  'NetworkDriver.EndpointOperInfo': async () => ({ Value: {} }),
};

const server = http.createServer((req, res) => {
  let text = '';
  req.on('data', (chunk: Buffer) => (text += chunk.toString()));
  req.on('end', () => {
    const method = (req.url ?? '').replace(/^\//, '');
    let body: Record<string, unknown> = {};
    try {
      body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    } catch {
      // Answered like any other call: this plugin judges nothing.
    }
    // Every other call (CreateNetwork, CreateEndpoint, Leave, Program..., DeleteNetwork) succeeds at once.
    (handlers[method] ?? (async () => ({})))(body).then(
      (reply) => res.writeHead(200, { 'Content-Type': 'application/vnd.docker.plugins.v1+json' }).end(JSON.stringify(reply)),
      (err: Error) => res.writeHead(200).end(JSON.stringify({ Err: err.message })),
    );
  });
});

await rm(socket, { force: true });
server.listen(socket, () => console.log(`listening on ${socket}`));
const stop = () => server.close(() => void rm(socket, { force: true }).then(() => process.exit(0)));
process.on('SIGTERM', stop).on('SIGINT', stop);
