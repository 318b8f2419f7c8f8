/** A driver configuration for in-process tests against a harness OVN. */
import { randomBytes } from 'node:crypto';
import type { DriverConfig } from '../../src/config.js';

export function testDriverConfig(
  ovn: { nbRemote: string; ovsRemote: string },
  pluginDir: string,
  overrides: Partial<DriverConfig> = {},
): DriverConfig {
  return {
    mode: 'overlay',
    vmPort: undefined,
    vmNic: undefined,
    pluginName: `ovn-test-${randomBytes(3).toString('hex')}`,
    pluginDir,
    listenTcp: undefined,
    bridge: 'br-int',
    nbRemote: ovn.nbRemote,
    nbTls: undefined,
    ovsDb: ovn.ovsRemote,
    mtu: 1442,
    scope: 'local',
    portUpTimeoutMs: 20_000,
    logLevel: 'warn',
    dockerSocket: undefined,
    gateway: 'host',
    masquerade: false,
    warmPorts: 2,
    warmPortsMax: 32,
    warmPortsIdleMs: 600_000,
    orphanGraceMs: 60_000,
    ...overrides,
  };
}
