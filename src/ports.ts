/**
 * `ovn-docker-driver ports`: the ports this host publishes for its
 * containers. The engine shows none of a remote driver's in `docker port`
 * (it cannot take them from a plugin), so this is where to read them,
 * `-P`'s chosen ports included. Read from the endpoints' OVS interfaces;
 * container names from the engine when it answers.
 */
import type { DriverConfig } from './config.js';
import { DockerApi } from './docker/api.js';
import { createRunner } from './host/exec.js';
import { Ovs } from './host/ovs.js';
import { describePublished, readPublications } from './publish/index.js';

export async function publishedPorts(config: DriverConfig): Promise<string> {
  const ovs = new Ovs({ runner: createRunner(), ...(config.ovsDb ? { db: config.ovsDb } : {}) });
  const { records } = await readPublications(ovs, config.bridge);
  const engine = config.dockerSocket ? new DockerApi(config.dockerSocket) : undefined;
  const names = new Map<string, string>();
  for (const networkId of new Set(records.map((r) => r.networkId))) {
    for (const [endpointId, name] of (await engine?.endpointNames(networkId).catch(() => new Map<string, string>())) ?? []) names.set(endpointId, name);
  }
  const lines = records.flatMap((r) =>
    r.ports.map((p) => `${names.get(r.endpointId) ?? r.endpointId.slice(0, 12)}\t${describePublished(p).replace(/->(\d+)/, `->${r.containerIp}:$1`)}`),
  );
  return lines.length ? ['CONTAINER\tPUBLISHED', ...lines.sort()].join('\n') : 'no ports published on this host';
}
