import { GENEVE_MTU } from './net/mtu.js';

/** The driver's settings, and what each one is when nobody sets it. */
export interface DriverConfig {
  /**
   * overlay: this host is an OVN chassis, containers' veths go on its
   * integration bridge. nested: this host is a VM whose own NIC is an OVN
   * port; containers' ports are children of it, told apart by VLAN tags on
   * the VM's own bridge (docs/nested.md).
   */
  mode: 'overlay' | 'nested';
  /** Nested mode: the VM's logical switch port, by name... */
  vmPort: string | undefined;
  /** ...or found by the MAC of this NIC of the VM. */
  vmNic: string | undefined;
  pluginName: string;
  pluginDir: string;
  /** TCP listener on loopback instead of the unix socket (for a spec-file setup). */
  listenTcp: { host: string; port: number } | undefined;
  bridge: string;
  /** OVN NB remote; undefined = read external_ids:ovn-nb of the local Open_vSwitch row. */
  nbRemote: string | undefined;
  /** serverName: the name NB's certificate must carry; default each remote's own host. */
  nbTls: { privateKey: string; certificate: string; caCert: string; serverName?: string } | undefined;
  /** Local OVS database for ovs-vsctl; undefined = its default socket. */
  ovsDb: string | undefined;
  mtu: number;
  scope: 'local' | 'global';
  portUpTimeoutMs: number;
  logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error';
  /** Unix socket of the local Docker engine's API, for container names (OVN DNS); undefined disables. */
  dockerSocket: string | undefined;
  /** Egress of networks that do not set -o ovn.gateway: this host through OVN, or Docker's docker_gwbridge. */
  gateway: 'host' | 'docker';
  /** For networks whose gateway is this host: masquerade their traffic leaving this host (iptables). */
  masquerade: boolean;
  /** Ports kept plugged and bound per IPv4 switch on this host while idle; 0 disables. */
  warmPorts: number;
  /** The most a switch's warm ports grow to after bursts of container starts (never below warmPorts). */
  warmPortsMax: number;
  /** How long a switch with extra warm ports sees no container start before they halve. */
  warmPortsIdleMs: number;
  /** How long an endpoint of this host may be unknown to the engine before it is removed as a leftover. */
  orphanGraceMs: number;
}

export const DEFAULT_CONFIG = {
  mode: 'overlay',
  vmPort: undefined,
  vmNic: undefined,
  pluginName: 'openvswitch',
  pluginDir: '/run/docker/plugins',
  listenTcp: undefined,
  bridge: 'br-int',
  /** The bridge in nested mode: the VM's bridge holding its NIC, as OVN's documentation names it. */
  nestedBridge: 'breth0',
  nbRemote: undefined,
  nbTls: undefined,
  ovsDb: undefined,
  mtu: GENEVE_MTU,
  // A standalone engine refuses global-scope networks.
  scope: 'local',
  portUpTimeoutMs: 15_000,
  logLevel: 'info',
  dockerSocket: '/var/run/docker.sock',
  gateway: 'host',
  masquerade: true,
  warmPorts: 2,
  warmPortsMax: 32,
  warmPortsIdleMs: 600_000,
  orphanGraceMs: 60_000,
} as const satisfies DriverConfig & { nestedBridge: string };
