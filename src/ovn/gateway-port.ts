/** The gateway localport of a network's switch (see gatewayPort). */
import type { EncodableDatum } from '../ovsdb/index.js';
import { Keys, OWNER } from './keys.js';
import { macFromId, macFromIPv4 } from '../net/mac.js';
import { addressEntry, type NetworkSpec } from './records.js';

export function gatewayPortName(switchName: string): string {
  return `${switchName}-gw`;
}

/** From the IPv4 gateway address as an endpoint's MAC is; an IPv6-only network's from its switch's name. */
export function gatewayMac(switchName: string, spec: Pick<NetworkSpec, 'ipv4'>): string {
  const v4 = spec.ipv4.find((s) => s.gateway)?.gateway;
  return v4 ? macFromIPv4(v4) : macFromId(gatewayPortName(switchName));
}

/**
 * The network's gateway address as a localport: traffic to it stays on each
 * chassis, where the host binds it when it is the network's gateway
 * (host/host-gateways.ts). Containers reach OVN's DNS responder at that
 * address (`--dns <gateway>`) in either case.
 */
export function gatewayPort(switchName: string, spec: NetworkSpec): { name: string; row: Record<string, EncodableDatum> } | undefined {
  const v4 = spec.ipv4.find((s) => s.gateway)?.gateway;
  const v6 = spec.ipv6.find((s) => s.gateway)?.gateway;
  if (!v4 && !v6) return undefined;
  const address = addressEntry(gatewayMac(switchName, spec), v4, v6);
  const name = gatewayPortName(switchName);
  return {
    name,
    row: {
      name,
      type: 'localport',
      addresses: [address],
      external_ids: new Map([
        [Keys.owner, OWNER],
        [Keys.switch, switchName],
        [Keys.role, 'gateway'],
      ]),
    },
  };
}

