/**
 * One MAC, one port on a switch (the gateway's included): which port holds
 * which MAC, and the MAC an endpoint gets, Docker's or a derived one.
 */
import { DomainError } from '../errors.js';
import type { Replica, Row } from '../ovsdb/index.js';
import { stripPrefix } from '../net/addressing.js';
import { isUnicastMac, macFromIPv4, macFromId } from '../net/mac.js';
import { externalIds } from './external-ids.js';
import { Keys } from './keys.js';
import { portAddressEntries, words, type EndpointSpec } from './records.js';

/** The ports on a switch with each of their MACs (lower case). */
function* portMacs(replica: Replica, ls: Row): Generator<[mac: string, port: Row]> {
  for (const uuid of Array.isArray(ls.ports) ? ls.ports : []) {
    const port = replica.get('Logical_Switch_Port', String(uuid));
    for (const { mac } of port ? portAddressEntries(port) : []) yield [mac.toLowerCase(), port!];
  }
}

/** The MACs (lower case) of every port on a switch. */
export function macsOnSwitch(replica: Replica, ls: Row): Set<string> {
  return new Set([...portMacs(replica, ls)].map(([mac]) => mac));
}

/**
 * Who holds each MAC (lower case) on a switch, for an error message: its
 * ports but those in `except` (this transaction removes them), and the
 * gateway, whose MAC is reserved from the network's gateway addresses even
 * when its localport is missing.
 */
export function macHolders(replica: Replica, ls: Row, except: ReadonlySet<string>): Map<string, string> {
  const holders = new Map<string, string>();
  for (const gateway of words(externalIds(ls).get(Keys.ipv4Gateways))) {
    holders.set(macFromIPv4(gateway), "the gateway's");
  }
  for (const [mac, port] of portMacs(replica, ls)) {
    if (except.has(port._uuid) || holders.has(mac)) continue;
    holders.set(mac, externalIds(port).get(Keys.role) === 'gateway' ? "the gateway's" : `already used by port ${String(port.name)}`);
  }
  return holders;
}

/** The endpoint's MAC: Docker's, unless another port of the switch (or its gateway) holds it; else one derived that nobody holds. */
export function endpointMac(spec: EndpointSpec, holders: ReadonlyMap<string, string>): string {
  return spec.mac ? checkMacFree(spec.mac, spec.networkId, holders) : chooseMac(spec, holders);
}

function checkMacFree(mac: string, networkId: string, holders: ReadonlyMap<string, string>): string {
  const holder = holders.get(mac.toLowerCase());
  if (holder) throw new DomainError(`MAC address ${mac} is ${holder} on network ${networkId}; choose another --mac-address`, 'conflict', { networkId, mac });
  return mac;
}

function chooseMac(spec: EndpointSpec, holders: ReadonlyMap<string, string>): string {
  if (spec.ipv4) {
    const mac = macFromIPv4(stripPrefix(spec.ipv4));
    if (!holders.has(mac)) return mac;
  }
  for (let attempt = 0; attempt < 64; attempt++) {
    const mac = macFromId(spec.endpointId, attempt);
    if (!holders.has(mac) && isUnicastMac(mac)) return mac;
  }
  throw new DomainError(`could not find a free MAC address for endpoint ${spec.endpointId}`, 'conflict', { endpointId: spec.endpointId });
}
