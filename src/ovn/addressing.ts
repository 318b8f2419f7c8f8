/**
 * Address arithmetic on what Docker sends: pools and addresses in CIDR
 * form ("10.1.0.0/24", "10.1.0.2/24"), validated with ip-cidr.
 */
import IPCIDR from 'ip-cidr';
import type { Address4, Address6 } from 'ip-address';
import { isIP } from 'node:net';

export interface Cidr {
  /** The address part, e.g. "10.1.0.2". */
  ip: string;
  prefix: number;
  family: 4 | 6;
}

export class AddressError extends Error {
  override name = 'AddressError';
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
