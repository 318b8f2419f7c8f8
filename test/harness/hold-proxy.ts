/**
 * A proxy in front of an ovsdb-server's unix socket that can hold back what
 * the server sends to its client: the client's replica then lags behind the
 * database by as much as a test wants, deterministically, while the client's
 * own requests still reach the server.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface HoldProxy {
  /** unix:… for the client. */
  remote: string;
  /** From now on, buffer everything the server sends. */
  hold(): void;
  /** Deliver what was held, and pass traffic through again. */
  release(): void;
  /** Resolves once the client has sent a message containing `text` (from now on). */
  clientSent(text: string): Promise<void>;
  close(): Promise<void>;
}

export async function startHoldProxy(serverSocket: string): Promise<HoldProxy> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ovn-test-hold-'));
  const socketPath = path.join(dir, 'proxy.sock');
  let holding = false;
  const held: { client: net.Socket; data: Buffer }[] = [];
  const watchers: { text: string; resolve: () => void }[] = [];
  const sockets = new Set<net.Socket>();

  const server = net.createServer((client) => {
    const upstream = net.connect({ path: serverSocket });
    sockets.add(client).add(upstream);
    client.on('data', (data) => {
      const text = data.toString('utf8');
      for (const w of [...watchers]) {
        if (!text.includes(w.text)) continue;
        watchers.splice(watchers.indexOf(w), 1);
        w.resolve();
      }
      upstream.write(data);
    });
    upstream.on('data', (data) => {
      if (holding) held.push({ client, data });
      else client.write(data);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));

  return {
    remote: `unix:${socketPath}`,
    hold() {
      holding = true;
    },
    release() {
      holding = false;
      for (const { client, data } of held.splice(0)) if (!client.destroyed) client.write(data);
    },
    clientSent(text) {
      return new Promise((resolve) => watchers.push({ text, resolve }));
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
