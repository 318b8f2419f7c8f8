import type { Condition } from '../ovsdb/index.js';
/**
 * external_ids keys through which the driver keeps its whole state in the
 * OVN Northbound database: a restarted driver rebuilds everything from them.
 */
export const OWNER = 'ovn-docker-driver';

export const Keys = {
  owner: 'docker:owner',
  networkId: 'docker:network-id',
  endpointId: 'docker:endpoint-id',
  ipv4Subnets: 'docker:ipv4-subnets',
  ipv4Gateways: 'docker:ipv4-gateways',
  /** Logical_Switch: --aux-address addresses Docker's IPAM reserved, space-separated (no endpoint gets them). */
  ipv4Aux: 'docker:ipv4-aux',
  ipv6Subnets: 'docker:ipv6-subnets',
  ipv6Gateways: 'docker:ipv6-gateways',
  mtu: 'docker:mtu',
  internal: 'docker:internal',
  options: 'docker:options',
  /** The endpoint's addresses in CIDR form, as Docker gave them. */
  ipv4: 'docker:ipv4',
  ipv6: 'docker:ipv6',
  /** Pools (Address_Set rows), see pools.ts. */
  pool: 'docker:pool',
  poolRange: 'docker:range',
  poolUser: 'docker:user:',
  poolIp: 'docker:ip:',
  /** Logical_Switch: one key per Docker network (on any host) attached to the switch. */
  networkPrefix: 'docker:network:',
  /**
   * Logical_Switch: per attached Docker network, its own host's gateway choice
   * ("host", "docker", or "none" for --internal): hosts sharing a pool's switch
   * each decide for themselves. Absent on attachments older than this key.
   */
  gatewayPrefix: 'docker:gateway:',
  /**
   * Address_Set: the switch (by name) of a network of Docker's IPAM whose
   * warm ports this set records, as a pool records those of our IPAM (warm-ports.ts).
   */
  portsOf: 'docker:ports-of',
  /** Logical_Switch: the pools (Address_Set names) whose network this switch is. */
  poolV4: 'docker:pool-v4',
  poolV6: 'docker:pool-v6',
  /** Logical_Switch_Port: "gateway" on the network's gateway localport. */
  role: 'docker:role',
  /** Logical_Switch_Port: the DNS names published for it (removed with it). */
  dnsNames: 'docker:dns-names',
  /**
   * Logical_Switch_Port: the name of its switch, on every port the driver
   * makes, so that a host replicates the ports of its own networks' switches
   * only (port-scope.ts).
   */
  switch: 'docker:switch',
  /** Chassis (OVS system-id) the endpoint was created on. */
  chassis: 'docker:chassis',
  /**
   * Logical_Switch_Port: a warm port (see warm-ports.ts), kept ready on the
   * chassis named here for an endpoint that has not been created yet. Its
   * docker:pool-v4 names the Address_Set holding its address: its pool, or
   * the port set of a network of Docker's IPAM.
   */
  warm: 'docker:warm',
  /** OVS Interface of an endpoint's veth: the ports this host publishes for it (src/publish). */
  published: 'docker:published',
} as const;

/** The -o driver option choosing a network's egress ("host" or "docker"), kept in Keys.options. */
export const GATEWAY_OPTION = 'ovn.gateway';

/** Tables and replica indexes the driver needs from the NB database. */
export const NB_TABLES = ['Logical_Switch', 'Logical_Switch_Port', 'Address_Set', 'DNS'];

/**
 * Which NB rows the driver replicates: only the rows it writes, which carry
 * its owner key, so that its memory and start-up follow this deployment's
 * networks rather than everything else in NB (other tenants' switches and
 * ports). Of ports, only this host's own to begin with: port-scope.ts adds
 * those of the switches of this host's networks. Nested mode reads every
 * port: the VM's own port, found by name or by MAC, is another system's.
 */
export function nbScope(mode: 'overlay' | 'nested', chassis: string): Record<string, readonly Condition[]> {
  const ours: Condition = ['external_ids', 'includes', new Map([[Keys.owner, OWNER]])];
  const scope: Record<string, readonly Condition[]> = {};
  for (const table of NB_TABLES) {
    if (table !== 'Logical_Switch_Port') scope[table] = [ours];
    else if (mode === 'overlay') scope[table] = ownPortClauses(chassis);
  }
  return scope;
}

/** Ports of this chassis: its endpoints and its warm ports. */
export function ownPortClauses(chassis: string): Condition[] {
  return [Keys.chassis, Keys.warm].map((key): Condition => ['external_ids', 'includes', new Map([[key, chassis]])]);
}

/** The ports of one of the driver's switches. */
export function switchPortsClause(switchName: string): Condition {
  return ['external_ids', 'includes', new Map([[Keys.switch, switchName]])];
}
export const NB_INDEXES = {
  Logical_Switch: { columns: ['name'], externalIds: [Keys.networkId, Keys.poolV4, Keys.poolV6] },
  // parent_name: the children of a VM's port and their VLAN tags (vlan-tags.ts).
  Logical_Switch_Port: { columns: ['parent_name'], externalIds: [Keys.endpointId, Keys.warm] },
};
