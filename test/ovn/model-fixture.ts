/**
 * Networks and endpoints made as the driver makes them, for the tests of
 * the OVN model on a bare NB ovsdb-server: their specs, a network on a pool
 * of our IPAM, and two hosts with networks on one pool's switch (what must
 * be unique on a switch, or shared on it).
 */
import { stripPrefix } from '../../src/net/addressing.js';
import type { EndpointRecord, NetworkSpec, OvnNetworks } from '../../src/ovn/networks.js';
import { poolName, type OvnPools, type PoolLease } from '../../src/ovn/pools.js';
import { useNbHosts, type NbHost } from '../harness/nb-hosts.js';
import { until } from './nb-reads.js';

/** 10.<n>.0.0/24 with gateway 10.<n>.0.1; on a pool when `pool`, so that every host's network shares one switch. */
export function networkSpec(h: { chassis: string }, n: number, networkId: string, pool = false): NetworkSpec {
  return {
    networkId,
    ipv4: [{ subnet: `10.${n}.0.0/24`, gateway: `10.${n}.0.1` }],
    ipv6: [],
    mtu: 1442,
    internal: false,
    options: {},
    ...(pool ? { pools: { v4: `docker_pool_10.${n}.0.0_24` } } : {}),
    chassis: h.chassis,
  };
}

export function endpoint(h: NbHost, networkId: string, endpointId: string, ipv4: string, mac?: string): Promise<EndpointRecord> {
  return h.networks.ensureEndpoint({ networkId, endpointId, ipv4, chassis: h.chassis, ...(mac ? { mac } : {}) }).then((r) => r.endpoint);
}

/** Host `h` joins (or makes) the pool of `subnet`, reserves its gateway and attaches network `networkId` to its switch. */
export async function poolNetwork(
  h: { chassis: string; networks: OvnNetworks },
  pools: OvnPools,
  subnet: string,
  networkId: string,
  mtu = 1442,
): Promise<PoolLease & { name: string; token: string }> {
  const lease = await pools.requestPool({ pool: subnet, subPool: '', v6: false, chassis: h.chassis });
  const gateway = stripPrefix(await pools.requestAddress(lease.poolId, '', 'gateway'));
  const name = poolName(lease.pool);
  await h.networks.ensureNetwork({ ...networkSpec(h, 0, networkId), ipv4: [{ subnet: lease.pool, gateway }], mtu, pools: { v4: name } });
  await pools.markNetworkCreated(lease.pool, h.chassis, networkId);
  return { ...lease, name, token: lease.poolId.split('/')[1]! };
}

/** Two hosts, with networks on one pool's switch and endpoints on them. */
export async function useSharedSwitch(t: { teardown(fn: () => Promise<void>): void }) {
  const [a, b] = (await useNbHosts(t, ['host-a', 'host-b'])) as [NbHost, NbHost];

  /** Both hosts' replicas show the endpoint. */
  async function seenByBoth(endpointId: string): Promise<void> {
    await until(a.nb, () => a.networks.findEndpoint(endpointId), `host A sees ${endpointId}`);
    await until(b.nb, () => b.networks.findEndpoint(endpointId), `host B sees ${endpointId}`);
  }

  /** One switch, network `a<n>` of host A and `b<n>` of host B on it; each host's replica knows both. */
  async function sharedNetwork(n: number): Promise<{ netA: string; netB: string; switchName: string }> {
    const netA = `a${n}`;
    const netB = `b${n}`;
    const created = await a.networks.ensureNetwork(networkSpec(a, n, netA, true));
    await b.networks.ensureNetwork(networkSpec(b, n, netB, true));
    await until(a.nb, () => a.networks.findNetwork(netB));
    return { netA, netB, switchName: created.name };
  }

  /**
   * sharedNetwork(n) with endpoint `<prefix>-a` of host A at 10.<n>.0.2 and
   * `<prefix>-b` of host B at 10.<n>.0.3, both known to both replicas.
   */
  async function endpointPair(n: number, prefix: string): Promise<{ netA: string; switchName: string }> {
    const { netA, netB, switchName } = await sharedNetwork(n);
    await endpoint(a, netA, `${prefix}-a`, `10.${n}.0.2/24`);
    await endpoint(b, netB, `${prefix}-b`, `10.${n}.0.3/24`);
    await seenByBoth(`${prefix}-a`);
    await seenByBoth(`${prefix}-b`);
    return { netA, switchName };
  }

  return { a, b, seenByBoth, sharedNetwork, endpointPair };
}
