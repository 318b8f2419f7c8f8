/**
 * Two hosts on one bare NB ovsdb-server, with networks on one pool's switch
 * and endpoints on them: the fixture of the tests of what must be unique on
 * a switch (switch-macs.test.ts) or shared on it (dns-names.test.ts).
 */
import type { EndpointRecord, NetworkSpec } from '../../src/ovn/networks.js';
import { useNbHosts, type NbHost } from '../harness/nb-hosts.js';
import { until } from './nb-reads.js';

/** 10.<n>.0.0/24 with gateway 10.<n>.0.1; on a pool when `pool`, so that every host's network shares one switch. */
export function networkSpec(h: NbHost, n: number, networkId: string, pool: boolean): NetworkSpec {
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
