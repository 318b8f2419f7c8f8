/**
 * Who accounts for the ports of a network's logical switch (issue 10's
 * orphan checks): a running container's endpoint, or a warm port. Anything
 * else is a leftover. Read from NB with ovn-nbctl and from the engine's
 * `docker network inspect`.
 */

export interface AccountedNetwork {
  /** Docker's network id. */
  networkId: string;
  /** The logical switch: the network id, or the pool's name on a network of the plugin's IPAM. */
  switchName: string;
  /** The Address_Set recording its warm ports: docker_ports_<network id>, or the pool. */
  warmSet: string;
}

export interface Accounting {
  /** Ports of the switch but its gateway. */
  ports: string[];
  unaccounted: string[];
  warm: string[];
}

/** ovn-nbctl or docker, bound to this test's server or engine: stdout. */
type Run = (...args: string[]) => Promise<string>;

export function networkOf(networkId: string, pool?: string): AccountedNetwork {
  return { networkId, switchName: pool ?? networkId, warmSet: pool ?? `docker_ports_${networkId}` };
}

/** Ports of the switch, by name (not its gateway). */
export async function switchPorts(nbctl: Run, net: AccountedNetwork): Promise<string[]> {
  const names = [...(await nbctl('lsp-list', net.switchName)).matchAll(/\((\S+)\)$/gm)].map((m) => m[1]!);
  return names.filter((n) => n !== `${net.switchName}-gw`);
}

/** The set's external_ids (a pool's reservations, a port set's warm ports). */
export async function setIds(nbctl: Run, setName: string): Promise<Map<string, string>> {
  const out = JSON.parse(await nbctl('--format=json', '--columns=external_ids', 'find', 'Address_Set', `name=${setName}`)) as {
    data: [['map', [string, string][]]][];
  };
  return new Map(out.data[0]?.[0][1] ?? []);
}

/** The engine's endpoints on the network: `running` its containers', `stale` those it keeps without one ("ep-<id>" entries). */
export async function engineEndpoints(docker: Run, networkId: string): Promise<{ running: Map<string, string>; stale: string[] }> {
  const out = await docker('network', 'inspect', '-f', '{{range $k, $v := .Containers}}{{$k}} {{$v.EndpointID}} {{$v.IPv4Address}}\n{{end}}', networkId);
  const running = new Map<string, string>();
  const stale: string[] = [];
  for (const [key, endpoint, cidr] of out.split('\n').filter(Boolean).map((l) => l.split(' '))) {
    if (key!.startsWith('ep-')) stale.push(endpoint!);
    else running.set(endpoint!, (cidr ?? '').split('/')[0]!);
  }
  return { running, stale };
}

/** A port is accounted for when an endpoint the engine has (a running container's; see also `stale`) or a warm port has it. */
export async function accounted(nbctl: Run, docker: Run, net: AccountedNetwork): Promise<Accounting> {
  const [ports, { running, stale }, ids] = await Promise.all([switchPorts(nbctl, net), engineEndpoints(docker, net.networkId), setIds(nbctl, net.warmSet)]);
  const endpoints = new Set([...running.keys(), ...stale]);
  const holders = [...ids.values()];
  const warm = holders.flatMap((h) => /^warm (\S+)$/.exec(h)?.[1] ?? []);
  // A warm port a container adopted is named in the set next to its endpoint.
  const adopted = new Map(holders.flatMap((h) => {
    const m = /^ep (\S+) (\S+)/.exec(h);
    return m ? [[m[1]!, m[2]!] as const] : [];
  }));
  const unaccounted = ports.filter((p) => !warm.includes(p) && !endpoints.has(adopted.get(p) ?? p));
  return { ports, unaccounted, warm };
}

/**
 * Addresses a pool (plugin's IPAM) holds for no one: every reservation is
 * the gateway's, an --aux-address, a warm port's of the switch, or a running
 * container's address (its own reservation, or the warm port it adopted).
 */
export async function strayReservations(nbctl: Run, docker: Run, net: AccountedNetwork): Promise<string[]> {
  const [ids, { running }, ports] = await Promise.all([setIds(nbctl, net.warmSet), engineEndpoints(docker, net.networkId), switchPorts(nbctl, net)]);
  const addresses = new Set(running.values());
  const stray: string[] = [];
  for (const [key, holder] of ids) {
    const ip = /^docker:ip:(.+)$/.exec(key)?.[1];
    if (ip === undefined || holder === 'gateway' || holder === 'aux') continue;
    const warm = /^warm (\S+)$/.exec(holder)?.[1];
    const adopted = /^ep \S+ (\S+)/.exec(holder)?.[1];
    const ok = warm !== undefined ? ports.includes(warm) : adopted !== undefined ? running.has(adopted) : addresses.has(ip);
    if (!ok) stray.push(`${ip} (${holder})`);
  }
  return stray;
}
