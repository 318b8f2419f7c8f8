/**
 * Which host port a request gets: the one asked for, the first free one of
 * a range (`-p 9100-9105:80`), or for `-P` the next free one of the host's
 * ephemeral range, as Docker's bridge chooses them. "Free" means no
 * publication of ours overlaps it and the host can hold it (reservations).
 */
import { isIpv6Address, type PortRequest, type Protocol } from './port-map.js';

export interface Taken {
  protocol: Protocol;
  hostIp: string;
  hostPort: number;
}

/** Whether two publications meet on the host: same protocol and port, and addresses of which one covers the other. */
export function overlaps(a: Taken, b: Taken): boolean {
  return a.protocol === b.protocol && a.hostPort === b.hostPort && (covers(a.hostIp, b.hostIp) || covers(b.hostIp, a.hostIp));
}

/** '' covers every address, '0.0.0.0' every IPv4 one, '::' every IPv6 one. */
function covers(wide: string, ip: string): boolean {
  if (wide === '' || wide === ip) return true;
  if (wide === '0.0.0.0') return !isIpv6Address(ip);
  return wide === '::' && isIpv6Address(ip);
}

export class PortAllocator {
  /** Where the next ephemeral search starts: ports are not handed out again at once after a release. */
  private cursor: number;

  constructor(private readonly ephemeral: { low: number; high: number }) {
    this.cursor = ephemeral.low;
  }

  /**
   * The host port for `request`, or undefined when none is free. `free`
   * says whether a port is free (ours and the host's); it may hold it.
   */
  async choose(request: PortRequest, free: (port: number) => Promise<boolean>): Promise<number | undefined> {
    if (request.hostPort !== 0) {
      for (let port = request.hostPort; port <= request.hostPortEnd; port++) if (await free(port)) return port;
      return undefined;
    }
    const { low, high } = this.ephemeral;
    const size = high - low + 1;
    for (let i = 0; i < size; i++) {
      const port = low + ((this.cursor - low + i) % size);
      if (await free(port)) {
        this.cursor = port === high ? low : port + 1;
        return port;
      }
    }
    return undefined;
  }
}

/** The host's ephemeral port range (net.ipv4.ip_local_port_range), as Docker's bridge uses it. */
export function parsePortRange(text: string): { low: number; high: number } | undefined {
  const m = /^\s*(\d+)\s+(\d+)\s*$/.exec(text);
  if (!m) return undefined;
  const low = Number(m[1]);
  const high = Number(m[2]);
  return low >= 1 && high <= 65535 && low <= high ? { low, high } : undefined;
}
