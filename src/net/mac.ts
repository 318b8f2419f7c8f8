/**
 * MAC addresses for endpoints Docker gave none. Deterministic, so that a
 * retried CreateEndpoint yields the same MAC, and locally administered
 * unicast (first octet 0x0a) so they never clash with vendor MACs.
 */
import { createHash } from 'node:crypto';

/** 0a:58:<IPv4 bytes>, the ovn-kubernetes recipe: unique wherever the IPv4 address is. */
export function macFromIPv4(ip: string): string {
  const octets = ip.split('.').map((o) => Number(o));
  if (octets.length !== 4 || octets.some((o) => !Number.isInteger(o) || o < 0 || o > 255)) {
    throw new Error(`not an IPv4 address: ${ip}`);
  }
  return ['0a', '58', ...octets.map((o) => o.toString(16).padStart(2, '0'))].join(':');
}

/** For endpoints without IPv4: 0a:59 + 4 bytes of a hash of the endpoint id (and a retry counter). */
export function macFromId(endpointId: string, attempt = 0): string {
  const digest = createHash('sha256').update(`${endpointId}/${attempt}`).digest();
  return ['0a', '59', ...[...digest.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

export function isUnicastMac(mac: string): boolean {
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(mac)) return false;
  return (parseInt(mac.slice(0, 2), 16) & 1) === 0;
}
