/**
 * `ovn-docker-driver cleanup`: remove everything the driver put on this
 * host, with the driver stopped: its firewall chains and jumps (in every
 * iptables backend), gateway ports, the OVS ports and veths of endpoints and
 * warm ports, a stale plugin socket; with `nb`, also this host's rows in the
 * OVN Northbound database (its endpoints, warm ports and network attachments).
 */
import { rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';
import type { DriverConfig } from './config.js';
import { GATEWAY_PREFIX, HostGateways } from './host/host-gateways.js';
import { HostPorts } from './host/host-ports.js';
import { createRunner } from './host/exec.js';
import { HostFirewall } from './host/firewall.js';
import { Links } from './host/links.js';
import { Ovs } from './host/ovs.js';
import { OvnNetworks } from './ovn/networks.js';
import { OvnPools } from './ovn/pools.js';
import { OvnWarmPorts } from './ovn/warm-ports.js';
import { connectNb, identifyHost, identifyVmPort, StartupError } from './service.js';

export interface CleanupOptions {
  /** Also remove this host's rows in NB. */
  nb: boolean;
}

export interface CleanupReport {
  gatewayPorts: number;
  bridgePorts: number;
  veths: number;
  nb?: { endpoints: number; warmPorts: number; networks: number };
}

export async function cleanupHost(config: DriverConfig, options: CleanupOptions, log: Logger): Promise<CleanupReport> {
  const socket = config.listenTcp ? undefined : path.join(config.pluginDir, `${config.pluginName}.sock`);
  if (await driverAnswers(config, socket)) {
    throw new StartupError(
      `the driver is still running (${socket ?? `tcp:${config.listenTcp!.host}:${config.listenTcp!.port}`} answers): ` +
        'stop it first (systemctl stop ovn-docker-driver), then run cleanup again',
    );
  }
  const runner = createRunner();
  const ovs = new Ovs({ runner, ...(config.ovsDb ? { db: config.ovsDb } : {}) });
  const links = new Links(runner);
  const hostLog = log.child({ component: 'cleanup' });
  // Rules are removed whatever --masquerade says now: an earlier run may have written them.
  const firewall = new HostFirewall(runner, links, { prefix: GATEWAY_PREFIX }, hostLog);
  const firewall6 = new HostFirewall(runner, links, { prefix: GATEWAY_PREFIX, family: 6 }, hostLog);
  const gateways = new HostGateways(ovs, links, firewall, config.bridge, hostLog, firewall6);
  const host = new HostPorts(links, ovs, config.bridge, hostLog);

  const report: CleanupReport = { gatewayPorts: 0, bridgePorts: 0, veths: 0 };
  if (options.nb) report.nb = await cleanupNb(config, ovs, links, log);
  log.info('removing the firewall rules and gateway ports of this host');
  report.gatewayPorts = await gateways.removeAll();
  log.info('removing the bridge ports and veths of endpoints and warm ports');
  const removed = await host.removeAll();
  report.bridgePorts = removed.ports;
  report.veths = removed.links;
  if (socket) await rm(socket, { force: true });
  log.info(report, 'cleanup done; IP forwarding is left as it is (Docker needs it too)');
  return report;
}

async function cleanupNb(config: DriverConfig, ovs: Ovs, links: Links, log: Logger): Promise<NonNullable<CleanupReport['nb']>> {
  const identity = await identifyHost(config, ovs, log);
  const { nb, ports } = await connectNb(config, identity.nbRemote, identity.hostId, log);
  try {
    // In nested mode the driver knows this host by its VM's port.
    const hostId = config.mode === 'nested' ? await identifyVmPort(config, nb, links, log) : identity.hostId;
    const networks = new OvnNetworks(nb);
    const warm = new OvnWarmPorts(nb, new OvnPools(nb));
    // Endpoints on ports made for them carry the chassis; those on warm ports are known by the port.
    const endpoints = new Set([
      ...networks.listEndpoints().filter((e) => e.chassis === hostId).map((e) => e.endpointId),
      ...warm.list(hostId).flatMap((p) => (p.endpointId ? [p.endpointId] : [])),
    ]);
    log.info({ count: endpoints.size }, "removing this host's endpoints from NB");
    for (const endpointId of endpoints) await networks.deleteEndpoint(endpointId);
    const warmPorts = warm.list(hostId);
    log.info({ count: warmPorts.length }, "removing this host's warm ports from NB");
    await warm.remove(warmPorts);
    await warm.releaseOrphanedAddresses();
    const local = networks.localNetworkIds(hostId);
    log.info({ count: local.length }, "detaching this host's networks (the last host out deletes the switch)");
    for (const networkId of local) await networks.deleteNetwork(networkId);
    return { endpoints: endpoints.size, warmPorts: warmPorts.length, networks: local.length };
  } finally {
    await ports?.stop();
    await nb.close();
  }
}

function driverAnswers(config: DriverConfig, socket: string | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    const s = socket ? net.connect({ path: socket }) : net.connect({ host: config.listenTcp!.host, port: config.listenTcp!.port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
