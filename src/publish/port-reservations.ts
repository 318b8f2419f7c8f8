/**
 * Host ports held open while they are published, as Docker's docker-proxy
 * holds them: another program (or a bridge network's -p) then cannot take a
 * port that traffic is DNAT'ed away from, and a port already in use on the
 * host is refused instead of silently shadowed. IPv4 sockets never carry
 * traffic: DNAT sends it to the container before any local socket sees it.
 * IPv6 ones forward what they receive (port-proxy.ts). SCTP has no socket in
 * Node: such ports are checked against our own only.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { isIpv6Address, type Protocol } from './port-map.js';
import { proxyTcp, proxyUdp, type Listener, type TargetOf } from './port-proxy.js';

export interface Reservation {
  protocol: Protocol;
  /** '' = every address, IPv4 and (where the host has IPv6) IPv6; '0.0.0.0' every IPv4, '::' every IPv6 one. */
  hostIp: string;
  hostPort: number;
}

type Held = { close(): void };

export class PortReservations {
  private readonly held = new Map<string, Held>();

  /**
   * Hold the port; false when the host has it in use already. Holding it
   * twice is a no-op. Its IPv6 part forwards to `targetOf()`.
   */
  async reserve(r: Reservation, targetOf: TargetOf): Promise<boolean> {
    const key = reservationKey(r);
    if (this.held.has(key)) return true;
    const socket = await open(r, targetOf);
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

async function open(r: Reservation, targetOf: TargetOf): Promise<Held | undefined> {
  if (r.protocol === 'sctp') return { close: () => undefined };
  if (isIpv6Address(r.hostIp)) return (r.protocol === 'udp' ? proxyUdp : proxyTcp)(r.hostIp, r.hostPort, targetOf);
  const v4 = await holdIpv4(r.protocol, r.hostIp === '' ? '0.0.0.0' : r.hostIp, r.hostPort);
  if (!v4 || r.hostIp !== '') return v4;
  // Every address: IPv6 too, as Docker's bridge publishes it, where the host has IPv6 at all.
  const v6 = await (r.protocol === 'udp' ? proxyUdp : proxyTcp)('::', r.hostPort, targetOf);
  if (v6) return both(v4, v6);
  if (await hasIpv6(r.protocol)) {
    v4.close();
    return undefined;
  }
  return v4;
}

function both(a: Held, b: Listener): Held {
  return {
    close: () => {
      a.close();
      b.close();
    },
  };
}

/** Whether the host can listen on IPv6 at all: if it can, a port that failed there is in use. */
function hasIpv6(protocol: 'tcp' | 'udp'): Promise<boolean> {
  return new Promise((resolve) => {
    if (protocol === 'udp') {
      const socket = dgram.createSocket({ type: 'udp6', ipv6Only: true });
      socket.once('error', () => {
        socket.close();
        resolve(false);
      });
      socket.bind({ address: '::', port: 0, exclusive: true }, () => {
        socket.close();
        resolve(true);
      });
      return;
    }
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ host: '::', port: 0, ipv6Only: true, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

function holdIpv4(protocol: 'tcp' | 'udp', host: string, port: number): Promise<Held | undefined> {
  if (protocol === 'udp') {
    return new Promise((resolve) => {
      const socket = dgram.createSocket({ type: 'udp4' });
      socket.once('error', () => {
        socket.close();
        resolve(undefined);
      });
      socket.bind({ address: host, port, exclusive: true }, () => {
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
    server.listen({ host, port, exclusive: true, backlog: 1 }, () => {
      server.removeAllListeners('error');
      server.on('error', () => undefined);
      server.unref();
      resolve({ close: () => server.close() });
    });
  });
}
