/**
 * The ports a container asks to publish, as the engine sends them in
 * `com.docker.network.portmap` (libnetwork PortBinding, JSON-encoded):
 * checked and turned into typed requests. Untrusted input: anything odd is
 * refused with a message naming the entry, nothing is guessed.
 */
import net from 'node:net';
import { DomainError } from '../errors.js';

export const PORT_MAP_OPTION = 'com.docker.network.portmap';
/**
 * Engines 28+ in Program's Options: another endpoint of the container is its
 * IPv6 gateway and publishes the IPv6 side of its ports itself.
 */
export const NO_PROXY_6TO4_OPTION = 'com.docker.network.driver.private.no_proxy_6to4';

export type Protocol = 'tcp' | 'udp' | 'sctp';

/** libnetwork's types.Protocol: the IP protocol number. */
const PROTOCOLS: ReadonlyMap<number, Protocol> = new Map([
  [6, 'tcp'],
  [17, 'udp'],
  [132, 'sctp'],
]);

export interface PortRequest {
  protocol: Protocol;
  /**
   * The host address to publish on, canonical: "" = every address of the
   * host, IPv4 and IPv6 (`-p 8080:80`); "0.0.0.0" every IPv4 one, "::" every IPv6 one.
   */
  hostIp: string;
  /** Host ports to choose one from: equal for `-p 8080:80`, a range for `-p 9100-9105:80`, both 0 for `-P`. */
  hostPort: number;
  hostPortEnd: number;
  containerPort: number;
}

/** The port map of Program's (or Join's) options; [] when there is none. */
export function portRequests(options: Record<string, unknown> | null | undefined): PortRequest[] {
  const raw = options?.[PORT_MAP_OPTION];
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw invalid(`${PORT_MAP_OPTION} must be a list`);
  if (raw.length > 1024) throw invalid(`${PORT_MAP_OPTION} has ${raw.length} entries (at most 1024)`);
  let requests = raw.map((entry: unknown, i) => portRequest(entry, `${PORT_MAP_OPTION}[${i}]`));
  // Ours is then the IPv4 side only: binding [::] as well would take the port from the other endpoint.
  if (options?.[NO_PROXY_6TO4_OPTION] === true) {
    requests = requests.flatMap((r) => (isIpv6Address(r.hostIp) ? [] : r.hostIp === '' ? [{ ...r, hostIp: '0.0.0.0' }] : [r]));
  }
  const seen = new Set<string>();
  for (const r of requests) {
    const key = requestKey(r);
    if (seen.has(key)) throw invalid(`${PORT_MAP_OPTION} lists ${describe(r)} twice`);
    seen.add(key);
  }
  return requests;
}

/** What identifies a request among a container's: the same one asked again keeps its host port. */
export function requestKey(r: PortRequest): string {
  return `${r.protocol}/${r.hostIp}/${r.hostPort}-${r.hostPortEnd}/${r.containerPort}`;
}

export function describe(r: PortRequest): string {
  const host = r.hostPort === 0 ? 'any port' : r.hostPort === r.hostPortEnd ? String(r.hostPort) : `${r.hostPort}-${r.hostPortEnd}`;
  const ip = r.hostIp === '' ? '' : r.hostIp.includes(':') ? `[${r.hostIp}]:` : `${r.hostIp}:`;
  return `${ip}${host}->${r.containerPort}/${r.protocol}`;
}

function portRequest(entry: unknown, field: string): PortRequest {
  if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) throw invalid(`${field} must be an object`);
  const e = entry as Record<string, unknown>;
  const protocol = typeof e.Proto === 'number' ? PROTOCOLS.get(e.Proto) : undefined;
  if (!protocol) throw invalid(`${field}.Proto ${JSON.stringify(e.Proto)} is not tcp (6), udp (17) or sctp (132)`);
  const hostIp = e.HostIP === undefined || e.HostIP === null ? '' : e.HostIP;
  if (typeof hostIp !== 'string' || (hostIp !== '' && net.isIP(hostIp) === 0)) throw invalid(`${field}.HostIP ${JSON.stringify(e.HostIP)} is not an IP address`);
  const containerPort = port(e.Port, `${field}.Port`, 1);
  const hostPort = port(e.HostPort ?? 0, `${field}.HostPort`, 0);
  const hostPortEnd = e.HostPortEnd === undefined || e.HostPortEnd === 0 ? hostPort : port(e.HostPortEnd, `${field}.HostPortEnd`, 1);
  if (hostPortEnd < hostPort || (hostPort === 0 && hostPortEnd !== 0)) throw invalid(`${field}: host ports ${hostPort}-${hostPortEnd} are not a range`);
  // An unspecified address ("0.0.0.0", "::") means every address of that family; "" both families.
  return { protocol, hostIp: canonicalIp(hostIp), hostPort, hostPortEnd, containerPort };
}

function port(value: unknown, field: string, min: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > 65535) {
    throw invalid(`${field} ${JSON.stringify(value)} is not a port number (${min}-65535)`);
  }
  return value;
}

/** Whether a (canonical) host address is an IPv6 one, '::' included. */
export function isIpv6Address(ip: string): boolean {
  return net.isIPv6(ip);
}

/** IPv6 compressed and in lower case, IPv4-mapped IPv6 as IPv4: one spelling per address, for conflicts and rules. */
function canonicalIp(ip: string): string {
  if (ip === '' || net.isIPv4(ip)) return ip;
  const compressed = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(compressed);
  if (!mapped) return compressed;
  const [high, low] = [parseInt(mapped[1]!, 16), parseInt(mapped[2]!, 16)];
  return [high >> 8, high & 255, low >> 8, low & 255].join('.');
}

function invalid(message: string): DomainError {
  return new DomainError(`invalid published port: ${message}`, 'invalid');
}
