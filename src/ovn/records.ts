/**
 * The driver's NB rows as typed records, and back: a network's switch, an
 * endpoint's port, and who holds an address in a pool or port set (warm
 * ports' states among them). Every reading or writing of those external_ids
 * formats is here, so that a restarted driver (or another host's) reads
 * what this one wrote.
 */
import type { EncodableDatum, Row } from '../ovsdb/index.js';
import { contains, stripPrefix } from '../net/addressing.js';
import { GENEVE_MTU } from '../net/mtu.js';
import { externalIds } from './external-ids.js';
import { GATEWAY_OPTION, Keys, OWNER } from './keys.js';
import { portTag } from './vlan-tags.js';

/** MTU of a switch that records none. */
export const DEFAULT_MTU = GENEVE_MTU;

export interface SubnetSpec {
  /** Canonical network, e.g. "10.1.0.0/24". */
  subnet: string;
  /** Gateway address without prefix, if Docker's IPAM reserved one. */
  gateway?: string;
  /** --aux-address addresses (without prefix) Docker's IPAM keeps from endpoints. */
  aux?: string[];
}

export interface NetworkSpec {
  networkId: string;
  ipv4: SubnetSpec[];
  ipv6: SubnetSpec[];
  mtu: number;
  internal: boolean;
  /** The `-o` driver options, kept so that a restarted driver knows them. */
  options: Record<string, string>;
  /**
   * Pools (Address_Set names, see pools.ts) of our cluster-wide IPAM: a
   * network on a pool shares the pool's logical switch with every other
   * host's network on it.
   */
  pools?: { v4?: string; v6?: string };
  /** OVS system-id of the host creating it. */
  chassis?: string;
}

export interface NetworkRecord extends NetworkSpec {
  uuid: string;
  name: string;
  /** Docker networks (of any host) attached to this switch. */
  attached: string[];
}

export interface EndpointSpec {
  networkId: string;
  endpointId: string;
  /** MAC from Docker; when absent one is derived. */
  mac?: string;
  /** "10.1.0.2/24" */
  ipv4?: string;
  ipv6?: string;
  /** This host's id: recorded on the port; in overlay mode it also pins the port to this chassis (options:requested-chassis). */
  chassis?: string;
  /** Nested mode: the VM's own port, parent of this one (see vlan-tags.ts). */
  parent?: string;
}

export interface EndpointRecord {
  uuid: string;
  name: string;
  networkId: string;
  endpointId: string;
  mac: string;
  ipv4?: string;
  ipv6?: string;
  /** OVS system-id of the host the endpoint was created on. */
  chassis?: string;
  /** Nested mode: the VLAN tag the VM's bridge gives the container's traffic. */
  tag?: number;
  up: boolean;
}

/** The space-separated words of an external_ids value ("" when absent). */
export function words(value: string | undefined): string[] {
  return (value ?? '').split(' ').filter(Boolean);
}

/* ---- Networks: a Logical_Switch ---- */

/** The switch's external_ids of a network it is created for. */
export function networkExternalIds(spec: NetworkSpec): Map<string, string> {
  const ids = new Map<string, string>([
    [Keys.owner, OWNER],
    [Keys.mtu, String(spec.mtu)],
    [Keys.internal, String(spec.internal)],
    [Keys.options, JSON.stringify(spec.options)],
  ]);
  const put = (key: string, values: (string | undefined)[]) => {
    const present = values.filter((v): v is string => Boolean(v));
    if (present.length) ids.set(key, present.join(' '));
  };
  put(Keys.ipv4Subnets, spec.ipv4.map((s) => s.subnet));
  put(Keys.ipv4Gateways, spec.ipv4.map((s) => s.gateway));
  put(Keys.ipv4Aux, spec.ipv4.flatMap((s) => s.aux ?? []));
  put(Keys.ipv6Subnets, spec.ipv6.map((s) => s.subnet));
  put(Keys.ipv6Gateways, spec.ipv6.map((s) => s.gateway));
  if (spec.pools?.v4) ids.set(Keys.poolV4, spec.pools.v4);
  if (spec.pools?.v6) ids.set(Keys.poolV6, spec.pools.v6);
  return ids;
}

/** The network's own keys on the switch: its attachment (by chassis) and its gateway choice. */
export function attachmentIds(spec: NetworkSpec): Map<string, string> {
  return new Map([
    [`${Keys.networkPrefix}${spec.networkId}`, spec.chassis ?? ''],
    [`${Keys.gatewayPrefix}${spec.networkId}`, ownGateway(spec)],
  ]);
}

/** The keys attachmentIds() wrote for a network. */
export function attachmentKeys(networkId: string): string[] {
  return [`${Keys.networkPrefix}${networkId}`, `${Keys.gatewayPrefix}${networkId}`];
}

/**
 * The gateway this network has on its own host: its -o ovn.gateway (after
 * the driver's route check), or none when --internal. Recorded per network,
 * since a host attaching to a pool's switch must not inherit the creator's.
 */
function ownGateway(spec: NetworkSpec): 'host' | 'docker' | 'none' {
  if (spec.internal) return 'none';
  return spec.options[GATEWAY_OPTION] === 'host' ? 'host' : 'docker';
}

/** Docker networks (of any host) attached to a switch. */
export function attachedNetworks(row: Row): string[] {
  const out: string[] = [];
  for (const key of externalIds(row).keys()) {
    if (key.startsWith(Keys.networkPrefix)) out.push(key.slice(Keys.networkPrefix.length));
  }
  return out;
}

/** Docker networks of the host `chassis` attached to a switch. */
export function networksOfHost(row: Row, chassis: string): string[] {
  const out: string[] = [];
  for (const [key, value] of externalIds(row)) {
    if (value === chassis && key.startsWith(Keys.networkPrefix)) out.push(key.slice(Keys.networkPrefix.length));
  }
  return out;
}

/** Whether the switch is a pool's of our IPAM: its addresses are reserved there, not by Docker. */
export function onPool(ls: Row): boolean {
  const ids = externalIds(ls);
  return ids.has(Keys.poolV4) || ids.has(Keys.poolV6);
}

export function switchMtu(ls: Row): number {
  return Number(externalIds(ls).get(Keys.mtu) ?? DEFAULT_MTU);
}

/** The network `networkId` as its switch records it. */
export function toNetwork(row: Row, networkId: string): NetworkRecord {
  const ids = externalIds(row);
  let options: Record<string, string> = {};
  try {
    const parsed: unknown = JSON.parse(ids.get(Keys.options) ?? '{}');
    if (parsed && typeof parsed === 'object') options = parsed as Record<string, string>;
  } catch {
    options = {};
  }
  const poolV4 = ids.get(Keys.poolV4);
  const poolV6 = ids.get(Keys.poolV6);
  // Attachments made before per-network gateway keys follow the stored (creator's) options.
  const own = ids.get(`${Keys.gatewayPrefix}${networkId}`);
  if (own === 'host' || own === 'docker') options = { ...options, [GATEWAY_OPTION]: own };
  return {
    uuid: row._uuid,
    name: String(row.name),
    networkId,
    attached: attachedNetworks(row),
    ...(poolV4 || poolV6 ? { pools: { ...(poolV4 ? { v4: poolV4 } : {}), ...(poolV6 ? { v6: poolV6 } : {}) } } : {}),
    ipv4: subnets(ids, Keys.ipv4Subnets, Keys.ipv4Gateways, Keys.ipv4Aux),
    ipv6: subnets(ids, Keys.ipv6Subnets, Keys.ipv6Gateways),
    mtu: switchMtu(row),
    internal: own === undefined ? ids.get(Keys.internal) === 'true' : own === 'none',
    options,
  };
}

function subnets(ids: Map<string, string>, subnetKey: string, gatewayKey: string, auxKey?: string): SubnetSpec[] {
  const gateways = words(ids.get(gatewayKey));
  const aux = auxKey === undefined ? [] : words(ids.get(auxKey));
  return words(ids.get(subnetKey)).map((subnet) => {
    const gateway = gateways.find((g) => contains(subnet, g));
    const reserved = aux.filter((a) => contains(subnet, a));
    return { subnet, ...(gateway ? { gateway } : {}), ...(reserved.length ? { aux: reserved } : {}) };
  });
}

/* ---- Endpoints: a Logical_Switch_Port ---- */

/** A port's `addresses` entries ("MAC IP [IP ...]") as written, split into the MAC and the IP addresses. */
export function portAddressEntries(port: Row): { mac: string; ips: string[] }[] {
  return (Array.isArray(port.addresses) ? port.addresses : []).map((entry) => {
    const [mac = '', ...ips] = String(entry).split(' ');
    return { mac, ips };
  });
}

/** The MAC of a port's first `addresses` entry, as written ("" when it has none). */
export function portMac(port: Row): string {
  return portAddressEntries(port)[0]?.mac ?? '';
}

/** The IP addresses (lower case) of every `addresses` entry of a port. */
export function portIps(port: Row): string[] {
  return portAddressEntries(port).flatMap((entry) => entry.ips.map((ip) => ip.toLowerCase()));
}

/** The `addresses` (and port_security) entry of a port: "MAC IP [IP ...]", from addresses with or without prefix. */
export function addressEntry(mac: string, ...ips: (string | undefined)[]): string {
  return [mac, ...ips.filter((ip): ip is string => Boolean(ip)).map(stripPrefix)].join(' ');
}

/**
 * Where a port is bound: on this host's chassis (overlay), or as a child
 * of the VM's port with a VLAN tag of its own (nested), bound wherever the
 * VM's port is, so never pinned to a chassis.
 */
export type Placement = { chassis: string } | { parent: string; tag: number };

/** The columns that place a port (see Placement). */
export function placementColumns(placement: Placement): Record<string, EncodableDatum> {
  if ('parent' in placement) return { parent_name: placement.parent, tag: placement.tag };
  return { options: new Map([['requested-chassis', placement.chassis]]) };
}

/** The columns of an endpoint's own port, named after the endpoint; `tag` when it is a child of spec.parent. */
export function endpointPortRow(spec: EndpointSpec, switchName: string, mac: string, tag?: number): Record<string, EncodableDatum> {
  const address = addressEntry(mac, spec.ipv4, spec.ipv6);
  const ids = new Map<string, string>([
    [Keys.owner, OWNER],
    [Keys.switch, switchName],
    [Keys.networkId, spec.networkId],
    [Keys.endpointId, spec.endpointId],
  ]);
  if (spec.ipv4) ids.set(Keys.ipv4, spec.ipv4);
  if (spec.ipv6) ids.set(Keys.ipv6, spec.ipv6);
  if (spec.chassis) ids.set(Keys.chassis, spec.chassis);
  const placement: Placement | undefined =
    spec.parent && tag !== undefined ? { parent: spec.parent, tag } : spec.chassis ? { chassis: spec.chassis } : undefined;
  return {
    name: spec.endpointId,
    addresses: [address],
    port_security: [address],
    external_ids: ids,
    ...(placement ? placementColumns(placement) : {}),
  };
}

/** The endpoint a port records (a warm port an endpoint adopted records it in its pool instead: see adoptedHolder). */
export function toEndpoint(row: Row): EndpointRecord {
  const ids = externalIds(row);
  const ipv4 = ids.get(Keys.ipv4);
  const ipv6 = ids.get(Keys.ipv6);
  const chassis = ids.get(Keys.chassis);
  const tag = row.parent_name ? portTag(row) : undefined;
  return {
    uuid: row._uuid,
    name: String(row.name),
    networkId: ids.get(Keys.networkId) ?? '',
    endpointId: ids.get(Keys.endpointId) ?? String(row.name),
    mac: portMac(row),
    ...(ipv4 ? { ipv4 } : {}),
    ...(ipv6 ? { ipv6 } : {}),
    ...(chassis ? { chassis } : {}),
    ...(tag !== undefined ? { tag } : {}),
    up: row.up === true,
  };
}

/* ---- Holders of addresses in a pool or port set (pools.ts, port-sets.ts, warm-ports.ts) ---- */

const WARM = 'warm ';
const ADOPTED = 'ep ';
const RECYCLED = 'recycled ';

/** The pool's external_ids key of an address, given with or without its prefix. */
export function reservationKey(address: string): string {
  return `${Keys.poolIp}${stripPrefix(address)}`;
}

/** The holder value of a warm port's address. */
export function warmHolder(portName: string): string {
  return `${WARM}${portName}`;
}

/**
 * The holder of an endpoint's address when the endpoint adopted a warm port.
 * The endpoint is recorded here rather than on the port: a write to a
 * Logical_Switch_Port costs ovn-northd (before 23.09) a full recompute,
 * hundreds of milliseconds of CPU on a large NB, while Address_Set changes
 * are incremental.
 */
export function adoptedHolder(portName: string, endpointId: string, networkId: string): string {
  return `${ADOPTED}${portName} ${endpointId} ${networkId}`;
}

/** The holder while a recycled port waits for ReleaseAddress (warm-ports.ts). */
export function recycledHolder(portName: string): string {
  return `${RECYCLED}${portName}`;
}

export type WarmHolder =
  | { state: 'warm' | 'recycled'; port: string }
  | { state: 'adopted'; port: string; endpointId: string; networkId: string };

/** What a holder value says about a warm port; undefined for other holders (Docker's, gateway, aux). */
export function parseWarmHolder(holder: string | undefined): WarmHolder | undefined {
  if (holder === undefined) return undefined;
  if (holder.startsWith(WARM)) return { state: 'warm', port: holder.slice(WARM.length) };
  if (holder.startsWith(RECYCLED)) return { state: 'recycled', port: holder.slice(RECYCLED.length) };
  if (holder.startsWith(ADOPTED)) {
    const [port, endpointId, networkId] = holder.slice(ADOPTED.length).split(' ');
    if (port && endpointId && networkId) return { state: 'adopted', port, endpointId, networkId };
  }
  return undefined;
}

/** The warm port holding an address as warm (free for any request), if one does. */
export function warmPortOf(holder: string | undefined): string | undefined {
  const parsed = parseWarmHolder(holder);
  return parsed?.state === 'warm' ? parsed.port : undefined;
}
