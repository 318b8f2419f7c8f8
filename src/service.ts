/**
 * Starts the whole driver: finds the NB database, syncs a replica of it,
 * cleans what a previous crash left on this host, then serves Docker.
 */
import type { FastifyInstance } from 'fastify';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { DEFAULT_CONFIG, type DriverConfig } from './config.js';
import { HostPorts } from './host/host-ports.js';
import { GATEWAY_PREFIX, HostGateways } from './host/host-gateways.js';
import { HostFirewall } from './host/firewall.js';
import { PortReadiness } from './ovn/port-readiness.js';
import { IpamDriver } from './driver/ipam-driver.js';
import { OvnPools } from './ovn/pools.js';
import { OvnWarmPorts } from './ovn/warm-ports.js';
import { WarmPool } from './warm/index.js';
import { DnsPublisher } from './driver/dns-publisher.js';
import { OrphanSweeper } from './driver/orphans.js';
import { DockerApi } from './docker/api.js';
import os from 'node:os';
import { NetworkDriver } from './driver/network-driver.js';
import { createRunner } from './host/exec.js';
import { Links } from './host/links.js';
import { Ovs } from './host/ovs.js';
import { NB_INDEXES, NB_TABLES, nbScope } from './ovn/keys.js';
import { OvnNetworks } from './ovn/networks.js';
import { PortScope } from './ovn/port-scope.js';
import { parsePortRange, PortPublisher } from './publish/index.js';
import { findVmPort } from './ovn/vm-port.js';
import { OvsdbClient } from './ovsdb/index.js';
import { buildApp } from './server/app.js';
import { listen } from './server/listen.js';

export interface RunningDriver {
  address: string;
  driver: NetworkDriver;
  ipam: IpamDriver;
  nb: OvsdbClient;
  app: FastifyInstance;
  close(): Promise<void>;
}

export class StartupError extends Error {}

export async function startDriver(config: DriverConfig, log: Logger = pino({ level: config.logLevel })): Promise<RunningDriver> {
  const runner = createRunner();
  // When Join waits for OVN to report the port up, waiting for ovs-vswitchd as well only adds latency. Not in a VM:
  // there a child port is up as soon as the hypervisor binds the VM's port, and only the VM's vswitchd knows the plug.
  const noWait = config.portUpTimeoutMs > 0 && config.mode === 'overlay';
  const ovs = new Ovs({ runner, noWait, ...(config.ovsDb ? { db: config.ovsDb } : {}) });
  const identity = await identifyHost(config, ovs, log);
  const { nbRemote } = identity;
  const { nb, ports } = await connectNb(config, nbRemote, identity.hostId, log);

  const links = new Links(runner);
  // Nested mode: this host is known by its VM's port, which every container port names as its parent.
  const parent =
    config.mode === 'nested'
      ? await identifyVmPort(config, nb, links, log).catch(async (err: unknown) => {
          await nb.close();
          throw err;
        })
      : undefined;
  const hostId = parent ?? identity.hostId;
  const host = new HostPorts(links, ovs, config.bridge, log.child({ component: 'host' }));
  const firewall = config.masquerade
    ? new HostFirewall(runner, links, { prefix: GATEWAY_PREFIX }, log.child({ component: 'firewall' }))
    : undefined;
  const firewall6 = config.masquerade
    ? new HostFirewall(runner, links, { prefix: GATEWAY_PREFIX, family: 6 }, log.child({ component: 'firewall6' }))
    : undefined;
  const gateways = new HostGateways(ovs, links, firewall, config.bridge, log.child({ component: 'gateway' }), firewall6);
  const datapath = await host.detectDatapath().catch(async (err: unknown) => {
    await nb.close();
    throw new StartupError(
      `integration bridge ${config.bridge} is not usable: ${(err as Error).message}. ` +
        'ovn-controller creates it once it runs; or pass --bridge.',
    );
  });
  log.info({ bridge: config.bridge, datapath: datapath || 'system' }, 'integration bridge found');

  // No ovn-controller runs in a VM: nothing would ever write ovn-installed there.
  const localOvs = parent ? undefined : await watchLocalInterfaces(config.ovsDb ?? DEFAULT_OVS_DB, log);
  const networks = new OvnNetworks(nb);
  const pools = new OvnPools(nb);
  const readiness = new PortReadiness(networks, localOvs);
  const warm = new WarmPool(
    new OvnWarmPorts(nb, pools, parent),
    host,
    readiness,
    {
      chassis: hostId,
      perSwitch: config.warmPorts,
      maxPerSwitch: config.warmPortsMax,
      idleShrinkMs: config.warmPortsIdleMs,
      reserveFree: WARM_RESERVE_FREE,
      readyTimeoutMs: config.portUpTimeoutMs || DEFAULT_CONFIG.portUpTimeoutMs,
      refillDelayMs: WARM_REFILL_DELAY_MS,
      maxStartMs: WARM_MAX_START_MS,
      pollMs: WARM_START_POLL_MS,
      retryDelayMs: WARM_RETRY_DELAY_MS,
      maxRetryDelayMs: WARM_MAX_RETRY_DELAY_MS,
    },
    log.child({ component: 'warm' }),
  );
  // -p/-P on networks whose gateway is this host: published here, in the driver's own firewall chains.
  const publisher =
    firewall && !parent
      ? new PortPublisher(ovs, links, firewall, config.bridge, await ephemeralPortRange(), log.child({ component: 'publish' }))
      : undefined;
  const driver = new NetworkDriver(
    networks,
    pools,
    host,
    gateways,
    readiness,
    {
      scope: config.scope,
      mtu: config.mtu,
      portUpTimeoutMs: config.portUpTimeoutMs,
      chassis: hostId,
      gateway: config.gateway,
      ...(parent ? { parent } : {}),
    },
    log.child({ component: 'driver' }),
    warm,
    publisher,
  );
  // Ports published before a restart: staged before the gateways' rebuild writes the rules, so that
  // neither a container's egress nor its published ports are ever missing from them.
  const republished = await publisher?.restore().catch((err: unknown) => {
    log.error({ err }, 'cannot restore the published ports of running containers; they are unreachable until their containers restart');
    return 0;
  });
  await driver.reconcile(true);
  await publisher?.apply();
  if (republished) log.info({ endpoints: republished }, 'published ports restored');
  // Before serving, so that no request meets a half-recovered port; ports become ready in the background.
  await warm.start().catch((err: unknown) => log.error({ err }, 'cannot recover warm ports; containers start without them'));

  const ipam = new IpamDriver(pools, hostId, log.child({ component: 'ipam' }), warm);
  // The engine usually starts after the driver: the publisher waits for its socket.
  const engine = config.dockerSocket ? new DockerApi(config.dockerSocket) : undefined;
  const dns = engine ? new DnsPublisher(engine, networks, hostId, log.child({ component: 'dns' })) : undefined;
  dns?.start();
  // DeleteEndpoint, then on a pool of our IPAM ReleaseAddress of the endpoint's addresses.
  const removeAsTheEngineWould = async (networkId: string, endpointId: string) => {
    const endpoint = networks.findEndpoint(endpointId);
    const network = networks.findNetwork(networkId);
    await driver.deleteEndpoint({ NetworkID: networkId, EndpointID: endpointId });
    for (const [pool, address] of [
      [network?.pools?.v4, endpoint?.ipv4],
      [network?.pools?.v6, endpoint?.ipv6],
    ]) {
      const poolId = pool && address ? pools.poolIdOf(pool, hostId, networkId) : undefined;
      if (poolId) await ipam.releaseAddress({ PoolID: poolId, Address: address!.split('/')[0]! });
    }
  };
  // Endpoints a crash left behind that the engine rolled back on its side (it never calls DeleteEndpoint for them).
  const orphans = engine
    ? new OrphanSweeper(
        engine,
        networks,
        (networkId, endpointId) => removeAsTheEngineWould(networkId, endpointId),
        { chassis: hostId, graceMs: config.orphanGraceMs, intervalMs: Math.max(1000, Math.min(30_000, config.orphanGraceMs / 2)) },
        log.child({ component: 'orphans' }),
      )
    : undefined;
  orphans?.start();
  const app = buildApp(driver, ipam, { logger: log.child({ component: 'http' }) });
  const address = await listen(
    app,
    config.listenTcp
      ? { kind: 'tcp', ...config.listenTcp }
      : { kind: 'unix', path: path.join(config.pluginDir, `${config.pluginName}.sock`) },
  );
  log.info({ address, plugin: config.pluginName }, 'serving Docker');

  return {
    address,
    driver,
    ipam,
    nb,
    app,
    async close() {
      await app.close();
      await warm.close();
      await dns?.stop();
      await orphans?.stop();
      await driver.drain();
      publisher?.close();
      await localOvs?.close();
      firewall?.close();
      firewall6?.close();
      await ports?.stop();
      await nb.close();
    },
  };
}

/** This host's chassis name and NB remote, from the flags or the local Open_vSwitch row. */
export async function identifyHost(
  config: DriverConfig,
  ovs: Ovs,
  log: Logger,
): Promise<{ hostId: string; chassis: string | undefined; nbRemote: string | undefined }> {
  const ovsIds = await ovs.openvswitchExternalIds().catch((err: unknown) => {
    throw new StartupError(
      `cannot read the local Open vSwitch database (${config.ovsDb ?? 'default socket'}): ${(err as Error).message}. ` +
        'Is ovsdb-server running? Start it with /usr/share/openvswitch/scripts/ovs-ctl start, or pass --ovs-db.',
    );
  });
  const chassis = ovsIds.get('system-id');
  // A VM in nested mode is known by its VM port instead (identifyVmPort).
  if (!chassis && config.mode === 'overlay') log.warn('Open_vSwitch external_ids:system-id is not set; using the hostname as the chassis name');
  return { hostId: chassis ?? os.hostname(), chassis, nbRemote: config.nbRemote ?? ovsIds.get('ovn-nb') };
}

/** The host's ephemeral ports (net.ipv4.ip_local_port_range), from which `-P` gets its ports, as with Docker's bridge. */
async function ephemeralPortRange(): Promise<{ low: number; high: number }> {
  const text = await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').catch(() => '');
  return parsePortRange(text) ?? { low: 49153, high: 65535 };
}

/** Nested mode: the name of the VM's own logical switch port, from --vm-port or the MAC of --vm-nic; also this host's id. */
export async function identifyVmPort(config: DriverConfig, nb: OvsdbClient, links: Links, log: Logger): Promise<string> {
  let by: { name: string } | { mac: string };
  if (config.vmPort !== undefined) {
    by = { name: config.vmPort };
  } else {
    const nic = config.vmNic!;
    const mac = await links.macOf(nic).catch((err: unknown) => {
      throw new StartupError(`cannot read the MAC address of --vm-nic ${nic}: ${(err as Error).message}`);
    });
    if (!mac) throw new StartupError(`--vm-nic ${nic}: no such network interface in this VM (see \`ip link\`)`);
    by = { mac };
  }
  try {
    const port = findVmPort(nb.replica, by);
    log.info({ mode: 'nested', vmPort: port.name, up: port.up, bridge: config.bridge }, "nested mode: containers' ports are children of the VM's port");
    if (!port.up) {
      log.warn({ vmPort: port.name }, "the VM's port is not up in OVN: no hypervisor has bound it yet, and no container can start until one has");
    }
    return port.name;
  } catch (err) {
    throw new StartupError((err as Error).message, { cause: err });
  }
}

/**
 * A client of the NB database with its replica in sync: in overlay mode,
 * with the ports of this host's switches too (port-scope.ts).
 */
export async function connectNb(
  config: DriverConfig,
  nbRemote: string | undefined,
  hostId: string,
  log: Logger,
): Promise<{ nb: OvsdbClient; ports: PortScope | undefined }> {
  if (!nbRemote) {
    throw new StartupError(
      'no OVN Northbound database given: pass --ovn-nb (e.g. tcp:CENTRAL_IP:6641) or set it once with ' +
        '`ovs-vsctl set Open_vSwitch . external_ids:ovn-nb=tcp:CENTRAL_IP:6641`',
    );
  }
  log.info({ nb: nbRemote, bridge: config.bridge, chassis: hostId }, 'connecting to the OVN Northbound database');
  const nb = new OvsdbClient({
    remote: nbRemote,
    database: 'OVN_Northbound',
    tables: NB_TABLES,
    where: nbScope(config.mode, hostId),
    indexes: NB_INDEXES,
    ...(config.nbTls ? { tls: config.nbTls } : {}),
    logger: log.child({ component: 'ovsdb' }),
  });
  nb.start();
  await nb.whenReady(30_000).catch(async (err: unknown) => {
    await nb.close();
    throw new StartupError(`cannot sync with the OVN Northbound database at ${nbRemote}: ${(err as Error).message}`);
  });
  if (config.mode === 'nested') return { nb, ports: undefined };
  const ports = new PortScope(nb, hostId, log.child({ component: 'ovsdb' }));
  ports.start();
  await nb.conditionsSettled(30_000).catch(async (err: unknown) => {
    await ports.stop();
    await nb.close();
    throw new StartupError(`cannot replicate the ports of this host's networks from ${nbRemote}: ${(err as Error).message}`);
  });
  return { nb, ports };
}

const DEFAULT_OVS_DB = 'unix:/var/run/openvswitch/db.sock';
/** Warm ports are made only while more addresses than this stay free for endpoints. */
const WARM_RESERVE_FREE = 8;
/**
 * After a hand-out, refill only this much later: a container that ends
 * sooner gives its port back (warm-pool.ts recycle()), and a refill would
 * compete for the CPU with the container's own start.
 */
const WARM_REFILL_DELAY_MS = 2000;
/**
 * A refill waits for the warm ports' container starts in flight, up to this
 * long after each Join: the engine took 11 s to finish a burst of 20 after
 * its last Join on a 2-core machine (docs/benchmarks.md).
 */
const WARM_MAX_START_MS = 20_000;
const WARM_START_POLL_MS = 250;
const WARM_RETRY_DELAY_MS = 10_000;
const WARM_MAX_RETRY_DELAY_MS = 300_000;

/**
 * A replica of the local Interface table, for ovn-installed (see
 * port-readiness.ts). Optional: without it Join waits for NB `up` alone.
 */
async function watchLocalInterfaces(remote: string, log: Logger): Promise<OvsdbClient | undefined> {
  const client = new OvsdbClient({
    remote,
    database: 'Open_vSwitch',
    tables: ['Interface'],
    leaderOnly: false,
    logger: log.child({ component: 'ovsdb-local' }),
  });
  client.start();
  try {
    await client.whenReady(5000);
    return client;
  } catch (err) {
    await client.close();
    log.warn({ remote, err: (err as Error).message }, 'cannot monitor the local OVS database; Join will wait for NB up only');
    return undefined;
  }
}
