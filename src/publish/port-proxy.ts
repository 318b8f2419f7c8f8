/**
 * Ports published on an IPv6 host address, served in user space: the
 * driver's networks reach the host over IPv4 only, so, as Docker's
 * docker-proxy does for a container without IPv6, the host accepts on its
 * IPv6 address and connects to the container's IPv4 one. The container sees
 * the connection come from its gateway (this host). TCP and UDP; connections
 * end when the publication does or the driver stops.
 */
import dgram from 'node:dgram';
import net from 'node:net';

/** Where a connection goes now; undefined drops it (the publication is changing or gone). */
export type TargetOf = () => { host: string; port: number } | undefined;

export interface Listener {
  close(): void;
}

/** A UDP "connection" (one client address and port) is forgotten after this long without a datagram, as conntrack's UDP stream timeout. */
const UDP_IDLE_MS = 120_000;
/** Clients served at once per UDP port; the one idle longest makes way for a new one. */
const UDP_MAX_CLIENTS = 1024;

/** Listen on [address]:port (IPv6 only); undefined when the host cannot (in use, no such address, no IPv6). */
export function proxyTcp(address: string, port: number, targetOf: TargetOf): Promise<Listener | undefined> {
  const open = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const target = targetOf();
    if (!target) return void client.destroy();
    const upstream = net.connect({ host: target.host, port: target.port, allowHalfOpen: true });
    open.add(client).add(upstream);
    // Each side's end of stream is passed on, so a client that sends and then half-closes still gets its answer.
    client.pipe(upstream);
    upstream.pipe(client);
    const done = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', done).on('close', done);
    upstream.on('error', done).on('close', done);
  });
  return new Promise((resolve) => {
    server.once('error', () => resolve(undefined));
    server.listen({ host: address, port, ipv6Only: true, exclusive: true }, () => {
      server.removeAllListeners('error');
      server.on('error', () => undefined);
      server.unref();
      resolve({
        close: () => {
          server.close();
          for (const socket of open) socket.destroy();
        },
      });
    });
  });
}

export function proxyUdp(address: string, port: number, targetOf: TargetOf): Promise<Listener | undefined> {
  const server = dgram.createSocket({ type: 'udp6', ipv6Only: true });
  /** Per client: a socket of its own toward the container, so that answers find their way back. */
  const clients = new Map<string, { socket: dgram.Socket; idle: NodeJS.Timeout }>();
  const forget = (key: string) => {
    const c = clients.get(key);
    if (!c) return;
    clearTimeout(c.idle);
    c.socket.close();
    clients.delete(key);
  };
  server.on('message', (message, from) => {
    const target = targetOf();
    if (!target) return;
    const key = `[${from.address}]:${from.port}`;
    let client = clients.get(key);
    if (!client) {
      if (clients.size >= UDP_MAX_CLIENTS) forget(clients.keys().next().value!);
      const socket = dgram.createSocket('udp4');
      socket.on('message', (answer) => {
        server.send(answer, from.port, from.address);
        refresh(key);
      });
      socket.on('error', () => forget(key));
      socket.unref();
      client = { socket, idle: setTimeout(() => forget(key), UDP_IDLE_MS).unref() };
      clients.set(key, client);
    }
    client.socket.send(message, target.port, target.host);
    refresh(key);
  });
  // Map order is the order of last use: the first entry is the one idle longest.
  const refresh = (key: string) => {
    const c = clients.get(key);
    if (!c) return;
    c.idle.refresh();
    clients.delete(key);
    clients.set(key, c);
  };
  return new Promise((resolve) => {
    server.once('error', () => {
      server.close();
      resolve(undefined);
    });
    server.bind({ address, port, exclusive: true }, () => {
      server.removeAllListeners('error');
      server.on('error', () => undefined);
      server.unref();
      resolve({
        close: () => {
          for (const key of [...clients.keys()]) forget(key);
          server.close();
        },
      });
    });
  });
}
