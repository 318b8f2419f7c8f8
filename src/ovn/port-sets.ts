/**
 * Which Address_Set records a switch's warm ports (warm-ports.ts), and the
 * way back. On a network of our IPAM it is the pool itself (pools.ts). On a
 * network of Docker's IPAM it is a "port set" of the switch's own, which
 * holds nothing but warm ports' addresses: Docker's IPAM keeps its
 * allocations to itself, and the set gives the same compare-and-swap
 * states without a write to the Logical_Switch_Port (which costs
 * ovn-northd < 23.09 a full recompute; an Address_Set write does not).
 */
import type { Replica, Row } from '../ovsdb/index.js';
import { Keys } from './keys.js';

const PORT_SET_PREFIX = 'docker_ports_';

/** The port set of a switch (named after the switch, whose name is its network's id). */
export function portSetName(switchName: string): string {
  return `${PORT_SET_PREFIX}${switchName}`;
}

export function isPortSet(setName: string): boolean {
  return setName.startsWith(PORT_SET_PREFIX);
}

/** The switch whose warm ports the set `setName` records: the pool's switch, or the port set's. */
export function switchOfWarmSet(replica: Replica, setName: string): Row | undefined {
  if (isPortSet(setName)) return replica.findOne('Logical_Switch', 'name', setName.slice(PORT_SET_PREFIX.length));
  return replica.findByExternalId('Logical_Switch', Keys.poolV4, setName)[0];
}
