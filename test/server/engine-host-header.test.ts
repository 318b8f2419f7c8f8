/**
 * The Host header engines send on the plugin's unix socket: since 25.0 (and
 * 20.10.26, 23.0.7, 24.0.5) "plugin.moby.localhost"; older builds send the
 * socket path cut at its first "/", i.e. an empty Host. Both must be
 * served: raw HTTP/1.1 requests as Go's client writes them, on a real
 * socket, against the app with fake drivers.
 */
import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fakeApp } from './fake-app.js';

const dir = await mkdtemp(path.join(os.tmpdir(), 'ovn-test-host-header-'));
const socket = path.join(dir, 'plugin.sock');
const { app } = fakeApp();
await app.listen({ path: socket });
t.teardown(async () => {
  await app.close();
  await rm(dir, { recursive: true, force: true });
});

/** One request as Go's http.Client writes it (no Content-Type), and the raw response. */
function rawRequest(host: string | undefined, method: string, body: string): Promise<string> {
  const head = [
    `POST /${method} HTTP/1.1`,
    ...(host === undefined ? [] : [`Host: ${host}`]),
    'User-Agent: Go-http-client/1.1',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Accept: application/vnd.docker.plugins.v1.2+json',
    'Accept-Encoding: gzip',
    '',
    '',
  ].join('\r\n');
  return new Promise((resolve, reject) => {
    const conn = net.connect({ path: socket }, () => conn.end(head + body));
    const chunks: Buffer[] = [];
    conn.on('data', (c: Buffer) => chunks.push(c));
    conn.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    conn.on('error', reject);
  });
}

t.test('Host: plugin.moby.localhost (25.0+) and an empty Host (older builds) are both served', async (t) => {
  for (const host of ['plugin.moby.localhost', '']) {
    const caps = await rawRequest(host, 'NetworkDriver.GetCapabilities', '');
    t.match(caps, /^HTTP\/1\.1 200 /, `GetCapabilities with Host "${host}"`);
    t.match(caps, /"GwAllocChecker":true/);
    const check = await rawRequest(host, 'NetworkDriver.GwAllocCheck', `${JSON.stringify({ Options: { 'com.docker.network.internal': true } })}\n`);
    t.match(check, /^HTTP\/1\.1 200 /, `GwAllocCheck with Host "${host}"`);
  }
});
