/**
 * Turns schema-checked Docker requests into the driver's network and
 * endpoint specs, enforcing what a JSON schema cannot: CIDR syntax,
 * address families, addresses inside the network, option types and MTU
 * bounds. Every failure is a 400 naming the offending field.
 */
import { AddressError, contains, networkOf, parseCidr } from '../net/addressing.js';
import type { EndpointSpec, NetworkRecord, NetworkSpec, SubnetSpec } from '../ovn/networks.js';
import type { CreateEndpointRequest, CreateNetworkRequest, DockerOptions, IpamData } from '../protocol/network-driver.js';
import { invalid } from './errors.js';
import { GATEWAY_OPTION } from '../ovn/keys.js';

export { GATEWAY_OPTION };

export const GENERIC_OPTIONS = 'com.docker.network.generic';
export const MTU_OPTION = 'com.docker.network.driver.mtu';
export const INTERNAL_OPTION = 'com.docker.network.internal';
const MIN_MTU = 1280;
const MAX_MTU = 65000;

export interface TranslateDefaults {
  mtu: number;
  /** Egress of networks without -o ovn.gateway (recorded in the network's options, so it never changes under a network). */
  gateway: 'host' | 'docker';
}

export function toNetworkSpec(req: CreateNetworkRequest, defaults: TranslateDefaults): NetworkSpec {
  const { generic, gateway, mtu, internal } = networkOptions(req.Options, defaults);
  // An engine 28+ sends [] (or null) for a family turned off: --ipv4=false makes an IPv6-only network.
  const ipv4 = (req.IPv4Data ?? []).map((d, i) => subnetSpec(d, 4, `IPv4Data[${i}]`));
  const ipv6 = (req.IPv6Data ?? []).map((d, i) => subnetSpec(d, 6, `IPv6Data[${i}]`));
  return { networkId: req.NetworkID, ipv4, ipv6, mtu, internal, options: { ...generic, [GATEWAY_OPTION]: gateway } };
}

/**
 * GwAllocCheck (engine 28+, before any IPAM call): the families whose
 * gateway address IPAM need not reserve. Only an --internal network's: any
 * other network's gateway address is its switch's gateway localport, the
 * host's side of it with -o ovn.gateway=host and the containers' DNS
 * address either way. The options are checked as CreateNetwork checks them,
 * so that a bad one fails the create before IPAM reserves anything.
 */
export function gatewaySkips(options: DockerOptions, defaults: TranslateDefaults): { SkipIPv4: boolean; SkipIPv6: boolean } {
  const { internal } = networkOptions(options, defaults);
  return { SkipIPv4: internal, SkipIPv6: internal };
}

/**
 * What CreateNetwork's Options say, checked. Only the keys read here are
 * checked: the engine adds keys as it goes (enable_ipv4 in 28.0), and an
 * unknown one is never refused.
 */
function networkOptions(options: DockerOptions, defaults: TranslateDefaults) {
  const generic = genericOptions(options);
  const gateway = generic[GATEWAY_OPTION];
  if (gateway !== undefined && gateway !== 'host' && gateway !== 'docker') {
    throw invalid(`${GATEWAY_OPTION} must be "host" (this host routes the network's traffic) or "docker" (Docker's docker_gwbridge), not "${gateway}"`);
  }
  return { generic, gateway: gateway ?? defaults.gateway, mtu: mtuOf(generic, defaults.mtu), internal: internalOption(options) };
}

/** --internal: `true` from the engine; absent, or `false` (swarm workers, some versions), otherwise. */
function internalOption(options: DockerOptions): boolean {
  const value = options?.[INTERNAL_OPTION];
  if (value === undefined || value === null) return false;
  if (typeof value !== 'boolean') throw invalid(`Options.${INTERNAL_OPTION} must be a boolean, not ${JSON.stringify(value).slice(0, 64)}`);
  return value;
}

export function toEndpointSpec(req: CreateEndpointRequest, network: NetworkRecord, chassis: string | undefined): EndpointSpec {
  const iface = req.Interface ?? {};
  const spec: EndpointSpec = { networkId: req.NetworkID, endpointId: req.EndpointID.toLowerCase() };
  if (iface.Address) spec.ipv4 = endpointAddress(iface.Address, 4, network.ipv4, 'Interface.Address');
  if (iface.AddressIPv6) spec.ipv6 = endpointAddress(iface.AddressIPv6, 6, network.ipv6, 'Interface.AddressIPv6');
  if (iface.MacAddress) {
    const mac = iface.MacAddress.toLowerCase();
    if ((parseInt(mac.slice(0, 2), 16) & 1) !== 0) throw invalid(`Interface.MacAddress ${mac} is a multicast address`);
    spec.mac = mac;
  }
  if (chassis) spec.chassis = chassis;
  return spec;
}

/** `-o` options: Docker sends them as a string map under com.docker.network.generic. */
export function genericOptions(options: DockerOptions): Record<string, string> {
  const raw = options?.[GENERIC_OPTIONS];
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw invalid(`Options.${GENERIC_OPTIONS} must be an object`);
  const out: Record<string, string> = {};
  const entries = Object.entries(raw);
  if (entries.length > 64) throw invalid('too many driver options (at most 64)');
  for (const [key, value] of entries) {
    if (typeof value !== 'string') throw invalid(`driver option ${key} must be a string`);
    if (key.length > 128 || value.length > 1024) throw invalid(`driver option ${key.slice(0, 128)} is too long`);
    out[key] = value;
  }
  return out;
}

function mtuOf(generic: Record<string, string>, fallback: number): number {
  const text = generic[MTU_OPTION];
  if (text === undefined) return fallback;
  if (!/^[0-9]{1,5}$/.test(text)) throw invalid(`${MTU_OPTION} must be a number, not "${text}"`);
  const mtu = Number(text);
  if (mtu < MIN_MTU || mtu > MAX_MTU) throw invalid(`${MTU_OPTION} must be between ${MIN_MTU} and ${MAX_MTU}, not ${mtu}`);
  return mtu;
}

function subnetSpec(data: IpamData, family: 4 | 6, field: string): SubnetSpec {
  const pool = cidr(data.Pool, family, `${field}.Pool`);
  const subnet = networkOf(pool);
  const spec: SubnetSpec = { subnet };
  if (data.Gateway) {
    const gateway = cidr(data.Gateway, family, `${field}.Gateway`);
    if (!contains(subnet, gateway.ip)) throw invalid(`${field}.Gateway ${data.Gateway} is outside the pool ${subnet}`);
    spec.gateway = gateway.ip;
  }
  // Kept for IPv4 only: warm ports of networks of Docker's IPAM must not sit on them (ovn/warm-ports.ts).
  const aux = Object.entries(data.AuxAddresses ?? {})
    .filter(([, text]) => text !== '')
    .map(([name, text]) => cidr(text, family, `${field}.AuxAddresses.${name}`).ip);
  if (family === 4 && aux.length) spec.aux = aux;
  return spec;
}

function endpointAddress(text: string, family: 4 | 6, subnets: SubnetSpec[], field: string): string {
  const c = cidr(text, family, field);
  // An IPv6-only network (engine 28+) has no IPv4 subnet: an IPv4 address would pass its port security unchecked.
  if (subnets.length === 0) throw invalid(`${field} ${text}: the network has no IPv${family} subnet`);
  const inside = subnets.some((s) => contains(s.subnet, c.ip));
  if (!inside) {
    throw invalid(`${field} ${text} is not inside the network's subnets (${subnets.map((s) => s.subnet).join(', ')})`);
  }
  return `${c.ip}/${c.prefix}`;
}

function cidr(text: string, family: 4 | 6, field: string) {
  try {
    return parseCidr(text, family);
  } catch (err) {
    if (err instanceof AddressError) throw invalid(`${field}: ${err.message}`);
    throw err;
  }
}
