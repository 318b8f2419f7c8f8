/**
 * The plugin as an engine sees it, on a bare NB ovsdb-server and no OVS:
 * the real HTTP app, NetworkDriver and IpamDriver, with the host side
 * (veths, bridge ports, host gateways) and warm ports stood in for. Join
 * answers as soon as its plug is recorded (no OVN daemon reports ports up).
 * For the tests of what engines 27 to 29 send (engine-*.test.ts); packets
 * between endpoints are in ipv6-only.test.ts, on a real OVN.
 */
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { IpamDriver } from '../../src/driver/ipam-driver.js';
import { NetworkDriver } from '../../src/driver/network-driver.js';
import type { HostGateways } from '../../src/host/host-gateways.js';
import type { HostPorts, PlugRequest } from '../../src/host/host-ports.js';
import { peerIfName } from '../../src/host/names.js';
import { OvnPools } from '../../src/ovn/pools.js';
import type { PortReadiness } from '../../src/ovn/port-readiness.js';
import { buildApp } from '../../src/server/app.js';
import type { WarmPorts } from '../../src/warm/index.js';
import { useNbHosts, type NbHost } from '../harness/nb-hosts.js';

export const hex = (n: number): string => randomBytes(n).toString('hex');

export interface EngineReply {
  status: number;
  body: Record<string, unknown>;
}

/** What the stand-ins saw. */
export interface HostCalls {
  plugs: PlugRequest[];
  unplugs: string[];
  gateways: string[];
}

/** Host side without a host: plugs are recorded and answered with the name a real plug gives. */
function fakeHost(calls: HostCalls): { host: HostPorts; gateways: HostGateways } {
  const host = {
    plug: async (req: PlugRequest) => {
      calls.plugs.push(req);
      return peerIfName(req.portName);
    },
    unplug: async (name: string) => void calls.unplugs.push(name),
    reconcile: async () => ({ removed: 0, kept: 0 }),
  };
  const gateways = {
    ensure: async (network: { networkId: string }) => void calls.gateways.push(network.networkId),
    remove: async () => undefined,
    restore: async () => 0,
    sweep: async () => 0,
    conflictingRoute: async () => undefined,
    ipv4Gateway: (network: { ipv4: { gateway?: string }[] }) => network.ipv4.find((s) => s.gateway)?.gateway,
    // No host forwards IPv6 here.
    ipv6Gateway: () => undefined,
  };
  return { host: host as unknown as HostPorts, gateways: gateways as unknown as HostGateways };
}

/** No warm ports: every endpoint gets a port of its own (warm ports are IPv4-only; ipv6-only.test.ts runs them). */
const noWarmPorts: WarmPorts = {
  start: async () => undefined,
  close: async () => undefined,
  portNames: () => [],
  networkCreated: () => undefined,
  lastNetworkLeaving: async () => undefined,
  endpointPort: async (_network, _spec, makeOwn) => ({ endpoint: await makeOwn(), warm: false }),
  takeReady: () => false,
  mayRecycle: () => false,
  recycle: async () => false,
  claim: async () => undefined,
  released: async () => false,
};

export interface EngineFixture {
  nb: NbHost;
  pools: OvnPools;
  calls: HostCalls;
  /** POST as the engine does: JSON with a trailing newline, no Content-Type (none at all when `body` is undefined). */
  post(method: string, body?: unknown): Promise<EngineReply>;
}

/** One host's plugin over a bare NB of its own, for a test file; stopped at its teardown. */
export async function useEngineFixture(t: { teardown(fn: () => Promise<void>): void }, settings: { gateway?: 'host' | 'docker' } = {}): Promise<EngineFixture> {
  const [nb] = (await useNbHosts(t, ['host-a'])) as [NbHost];
  const calls: HostCalls = { plugs: [], unplugs: [], gateways: [] };
  const { host, gateways } = fakeHost(calls);
  const pools = new OvnPools(nb.nb);
  const log = pino({ level: 'silent' });
  const driver = new NetworkDriver(
    nb.networks,
    pools,
    host,
    gateways,
    {} as PortReadiness,
    { scope: 'local', mtu: 1442, portUpTimeoutMs: 0, chassis: nb.chassis, gateway: settings.gateway ?? 'host' },
    log,
    noWarmPorts,
  );
  const ipam = new IpamDriver(pools, nb.chassis, log, noWarmPorts);
  const app = buildApp(driver, ipam, { logger: log });
  t.teardown(async () => {
    await driver.drain();
    await app.close();
  });
  const post = async (method: string, body?: unknown): Promise<EngineReply> => {
    const res = await app.inject({ method: 'POST', url: `/${method}`, ...(body === undefined ? {} : { payload: `${JSON.stringify(body)}\n` }) });
    return { status: res.statusCode, body: res.json() as Record<string, unknown> };
  };
  return { nb, pools, calls, post };
}
