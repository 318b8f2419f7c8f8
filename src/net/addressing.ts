/**
 * Address arithmetic on what Docker sends: pools and addresses in CIDR
 * form ("10.1.0.0/24", "10.1.0.2/24"), validated with ip-cidr.
 */
import IPCIDR from 'ip-cidr';
import type { Address4, Address6 } from 'ip-address';
import { isIP } from 'node:net';
import { DomainError } from '../errors.js';

export interface Cidr {
  /** The address part, e.g. "10.1.0.2". */
  ip: string;
  prefix: number;
  family: 4 | 6;
}

/** An address that does not parse: the request's fault. */
export class AddressError extends DomainError {
  override name = 'AddressError';

  constructor(message: string) {
    super(message, 'invalid');
  }
}

/** Parse "ADDR/LEN"; `family` restricts the address family. */
export function parseCidr(text: string, family?: 4 | 6): Cidr {
  const slash = text.indexOf('/');
  const ip = slash < 0 ? text : text.slice(0, slash);
  const prefixText = slash < 0 ? '' : text.slice(slash + 1);
  const fam = isIP(ip);
  if (fam !== 4 && fam !== 6) throw new AddressError(`"${text}" is not an IP address in CIDR form`);
  if (family && fam !== family) throw new AddressError(`"${text}" is not an IPv${family} address`);
  if (!/^[0-9]{1,3}$/.test(prefixText)) throw new AddressError(`"${text}" has no prefix length`);
  const prefix = Number(prefixText);
  if (prefix > (fam === 4 ? 32 : 128)) throw new AddressError(`"${text}" has an invalid prefix length`);
  if (!IPCIDR.isValidCIDR(`${ip}/${prefix}`)) throw new AddressError(`"${text}" is not a valid CIDR`);
  return { ip: fam === 6 ? ip.toLowerCase() : ip, prefix, family: fam };
}

/** The network of a CIDR in canonical form, e.g. "10.1.0.2/24" -> "10.1.0.0/24", "fd78::5/64" -> "fd78::/64". */
export function networkOf(cidr: Cidr): string {
  const start = new IPCIDR(`${cidr.ip}/${cidr.prefix}`).start<Address4 | Address6>({ type: 'addressObject' });
  return `${start.correctForm()}/${cidr.prefix}`;
}

/** The address part of "ADDR/LEN" ("10.1.0.2/24" -> "10.1.0.2"); an address without a prefix as it is. */
export function stripPrefix(cidr: string): string {
  const slash = cidr.indexOf('/');
  return slash < 0 ? cidr : cidr.slice(0, slash);
}

export function contains(subnet: string, ip: string): boolean {
  return new IPCIDR(subnet).contains(ip);
}

export function isIPv4(ip: string): boolean {
  return isIP(ip) === 4;
}

/** First and last address of a CIDR as numbers. */
export function addressBounds(cidr: string): [bigint, bigint] {
  const c = new IPCIDR(cidr);
  const num = (a: Address4 | Address6) => BigInt(a.bigInteger().toString());
  return [num(c.start<Address4 | Address6>({ type: 'addressObject' })), num(c.end<Address4 | Address6>({ type: 'addressObject' }))];
}

/** An IPv4 address, with or without its prefix ("10.0.0.5" or "10.0.0.5/24"), as a number: for ordering. */
export function ipv4Value(ipv4: string): bigint {
  const ip = stripPrefix(ipv4);
  if (!isIPv4(ip)) throw new AddressError(`not an IPv4 address: ${JSON.stringify(ipv4)}`);
  return ip.split('.').reduce((n, octet) => (n << 8n) | BigInt(octet), 0n);
}

export function bigToIPv4(n: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((n >> s) & 255n)).join('.');
}

export function bigToIPv6(n: bigint): string {
  const groups: string[] = [];
  for (let s = 112n; s >= 0n; s -= 16n) groups.push(((n >> s) & 0xffffn).toString(16));
  // Canonical compressed form, as parseCidr/networkOf produce it.
  return stripPrefix(networkOf(parseCidr(`${groups.join(':')}/128`, 6)));
}

export interface FreeScan {
  /** Where addresses come from within the subnet (an --ip-range); the whole subnet by default. */
  range?: string;
  /** Skip the range's own first and last addresses as well as the subnet's. */
  skipRangeEdges?: boolean;
  /** Start the scan at this address (inclusive), if it is later than the range's start. */
  from?: string;
}

/**
 * The `limit` lowest addresses of `subnet` that are not in `taken` (nor the
 * subnet's network address, nor its IPv4 broadcast address), in order. The
 * scan is bounded: past 1024 addresses beyond those taken, it stops.
 */
export function lowestFree(subnet: string, taken: ReadonlySet<string>, limit: number, scan: FreeScan = {}): string[] {
  const v4 = !subnet.includes(':');
  let [start, end] = addressBounds(scan.range ?? subnet);
  const [netStart, netEnd] = addressBounds(subnet);
  const [rangeStart, rangeEnd] = [start, end];
  if (scan.from !== undefined) {
    const [from] = addressBounds(`${scan.from}/${v4 ? 32 : 128}`);
    if (from > start) start = from;
  }
  const out: string[] = [];
  for (let ip = start, i = 0; ip <= end && i < taken.size + 2 + 1024 && out.length < limit; ip++, i++) {
    if (ip === netStart || (v4 && ip === netEnd)) continue;
    if (scan.skipRangeEdges && v4 && (ip === rangeStart || ip === rangeEnd)) continue;
    const text = v4 ? bigToIPv4(ip) : bigToIPv6(ip);
    if (!taken.has(text)) out.push(text);
  }
  return out;
}
