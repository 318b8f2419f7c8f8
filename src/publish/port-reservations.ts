/**
 * Host ports held open while they are published, as Docker's docker-proxy
 * holds them: another program (or a bridge network's -p) then cannot take a
 * port that traffic is DNAT'ed away from, and a port already in use on the
 * host is refused instead of silently shadowed. The sockets never carry
 * traffic: DNAT sends it to the container before any local socket sees it.
 * SCTP has no socket in Node: such ports are checked against our own only.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { Protocol } from './port-map.js';

export interface Reservation {
  protocol: Protocol;
  /** '' = every IPv4 address. */
  hostIp: string;
  hostPort: number;
}

type Held = { close(): void };

export class PortReservations {
  private readonly held = new Map<string, Held>();

  /** Hold the port; false when the host has it in use already. Holding it twice is a no-op. */
  async reserve(r: Reservation): Promise<boolean> {
    const key = reservationKey(r);
    if (this.held.has(key)) return true;
    const socket = await open(r);
    if (!socket) return false;
    this.held.set(key, socket);
    return true;
  }

  release(r: Reservation): void {
    const key = reservationKey(r);
    this.held.get(key)?.close();
    this.held.delete(key);
  }

  closeAll(): void {
    for (const socket of this.held.values()) socket.close();
    this.held.clear();
  }
}

function reservationKey(r: Reservation): string {
  return `${r.protocol}/${r.hostIp}/${r.hostPort}`;
}

function open(r: Reservation): Promise<Held | undefined> {
  const host = r.hostIp === '' ? '0.0.0.0' : r.hostIp;
  if (r.protocol === 'sctp') return Promise.resolve({ close: () => undefined });
  if (r.protocol === 'udp') {
    return new Promise((resolve) => {
      const socket = dgram.createSocket({ type: 'udp4' });
      socket.once('error', () => {
        socket.close();
        resolve(undefined);
      });
      socket.bind({ address: host, port: r.hostPort, exclusive: true }, () => {
        socket.removeAllListeners('error');
        socket.on('error', () => undefined);
        socket.unref();
        resolve({ close: () => socket.close() });
      });
    });
  }
  return new Promise((resolve) => {
    const server = net.createServer((connection) => connection.destroy());
    server.once('error', () => resolve(undefined));
    server.listen({ host, port: r.hostPort, exclusive: true, backlog: 1 }, () => {
      server.removeAllListeners('error');
      server.on('error', () => undefined);
      server.unref();
      resolve({ close: () => server.close() });
    });
  });
}
