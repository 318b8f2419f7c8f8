/** The gateway localport of a network's switch (see gatewayPort). */
import type { EncodableDatum } from '../ovsdb/index.js';
import { Keys, OWNER } from './keys.js';
import { macFromIPv4 } from '../net/mac.js';
import { addressEntry, type NetworkSpec } from './records.js';

/**
 * The network's gateway address as a localport: traffic to it stays on each
 * chassis, where the host binds it when it is the network's gateway
 * (host/host-gateways.ts). Containers reach OVN's DNS responder at that
 * address (`--dns <gateway>`) in either case.
 */
export function gatewayPort(switchName: string, spec: NetworkSpec): { name: string; row: Record<string, EncodableDatum> } | undefined {
  const v4 = spec.ipv4.find((s) => s.gateway)?.gateway;
  if (!v4) return undefined;
  const v6 = spec.ipv6.find((s) => s.gateway)?.gateway;
  const address = addressEntry(macFromIPv4(v4), v4, v6);
  const name = `${switchName}-gw`;
  return {
    name,
    row: {
      name,
      type: 'localport',
      addresses: [address],
      external_ids: new Map([
        [Keys.owner, OWNER],
        [Keys.role, 'gateway'],
      ]),
    },
  };
}

