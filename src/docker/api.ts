/**
 * The little of the Docker Engine API the driver reads: container inspect
 * and the network connect/disconnect event stream of the local engine. The
 * plugin protocol never tells a network driver a container's name; the
 * engine's API does.
 */
import http from 'node:http';

export interface ContainerNetwork {
  NetworkID: string;
  EndpointID: string;
  IPAddress: string;
  GlobalIPv6Address: string;
  Aliases: string[] | null;
}

export interface ContainerInfo {
  id: string;
  name: string;
  networks: ContainerNetwork[];
}

export interface NetworkEvent {
  action: 'connect' | 'disconnect';
  networkId: string;
  containerId: string;
}

export class DockerApiError extends Error {
  override name = 'DockerApiError';
}

export class DockerApi {
  constructor(private readonly socketPath: string) {}

  async inspectContainer(id: string): Promise<ContainerInfo | undefined> {
    if (!/^[0-9a-f]{12,64}$/.test(id)) throw new DockerApiError(`not a container id: ${id}`);
    const { status, body } = await this.get(`/containers/${id}/json`);
    if (status === 404) return undefined;
    if (status !== 200) throw new DockerApiError(`inspect ${id}: HTTP ${status}`);
    return parseContainer(JSON.parse(body) as unknown);
  }

  /** Containers currently attached to `networkId` (ids only). */
  async containersOn(networkId: string): Promise<string[]> {
    const { status, body } = await this.get(`/networks/${encodeURIComponent(networkId)}`);
    if (status !== 200) return [];
    const net = JSON.parse(body) as { Containers?: Record<string, unknown> };
    return Object.keys(net.Containers ?? {}).filter((id) => /^[0-9a-f]{64}$/.test(id));
  }

  /**
   * The endpoints the engine has on `networkId` (its containers'), or
   * undefined when it cannot tell: the engine does not answer, or does not
   * know the network (then it is not this engine's, and nothing of it is
   * evidence).
   */
  async endpointsOn(networkId: string): Promise<Set<string> | undefined> {
    const { status, body } = await this.get(`/networks/${encodeURIComponent(networkId)}`).catch(() => ({ status: 0, body: '' }));
    if (status !== 200) return undefined;
    const net = JSON.parse(body) as { Containers?: Record<string, { EndpointID?: unknown }> };
    const ids = Object.values(net.Containers ?? {}).map((c) => c.EndpointID);
    return new Set(ids.filter((id): id is string => typeof id === 'string' && /^[0-9a-f]{64}$/.test(id)));
  }

  /** The names of the containers on `networkId`, by their endpoint ids (empty when the engine does not know it). */
  async endpointNames(networkId: string): Promise<Map<string, string>> {
    const { status, body } = await this.get(`/networks/${encodeURIComponent(networkId)}`).catch(() => ({ status: 0, body: '' }));
    if (status !== 200) return new Map();
    const net = JSON.parse(body) as { Containers?: Record<string, { EndpointID?: unknown; Name?: unknown }> };
    const names = new Map<string, string>();
    for (const c of Object.values(net.Containers ?? {})) {
      if (typeof c.EndpointID === 'string' && typeof c.Name === 'string') names.set(c.EndpointID, c.Name);
    }
    return names;
  }

  /**
   * Follow network connect/disconnect events until `signal` aborts; the
   * stream is re-opened (after a pause) when the engine goes away.
   */
  async followNetworkEvents(handlers: {
    onEvent: (e: NetworkEvent) => void;
    /** The stream is (again) open: events from before it were missed. */
    onConnected: () => void;
    onError: (err: Error) => void;
    signal: AbortSignal;
  }): Promise<void> {
    const { onEvent, onConnected, onError, signal } = handlers;
    const filters = encodeURIComponent(JSON.stringify({ type: ['network'], event: ['connect', 'disconnect'] }));
    while (!signal.aborted) {
      try {
        await this.stream(`/events?filters=${filters}`, signal, onConnected, (line) => {
          const event = parseEvent(line);
          if (event) onEvent(event);
        });
      } catch (err) {
        if (!signal.aborted) onError(err as Error);
      }
      if (!signal.aborted) await new Promise((r) => setTimeout(r, 1000).unref());
    }
  }

  private get(path: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.get({ socketPath: this.socketPath, path, timeout: 10_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new DockerApiError(`GET ${path}: no answer from ${this.socketPath}`)));
      req.on('error', reject);
    });
  }

  private stream(path: string, signal: AbortSignal, onOpen: () => void, onLine: (line: string) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const req = http.get({ socketPath: this.socketPath, path, signal }, (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new DockerApiError(`GET ${path}: HTTP ${res.statusCode}`));
          return;
        }
        onOpen();
        let buffered = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buffered += chunk;
          let nl;
          while ((nl = buffered.indexOf('\n')) >= 0) {
            const line = buffered.slice(0, nl).trim();
            buffered = buffered.slice(nl + 1);
            if (line) onLine(line);
          }
          if (buffered.length > 1024 * 1024) res.destroy(new DockerApiError('event line too long'));
        });
        res.on('end', () => resolve());
        res.on('error', reject);
      });
      req.on('error', (err) => (signal.aborted ? resolve() : reject(err)));
    });
  }
}

function parseEvent(line: string): NetworkEvent | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return undefined;
  }
  const e = raw as { Type?: unknown; Action?: unknown; Actor?: { ID?: unknown; Attributes?: { container?: unknown } } };
  if (e.Type !== 'network' || (e.Action !== 'connect' && e.Action !== 'disconnect')) return undefined;
  const networkId = e.Actor?.ID;
  const containerId = e.Actor?.Attributes?.container;
  if (typeof networkId !== 'string' || typeof containerId !== 'string') return undefined;
  return { action: e.Action, networkId, containerId };
}

function parseContainer(raw: unknown): ContainerInfo | undefined {
  const c = raw as { Id?: unknown; Name?: unknown; NetworkSettings?: { Networks?: Record<string, Partial<ContainerNetwork>> } };
  if (typeof c.Id !== 'string' || typeof c.Name !== 'string') return undefined;
  const networks: ContainerNetwork[] = [];
  for (const n of Object.values(c.NetworkSettings?.Networks ?? {})) {
    if (typeof n.NetworkID !== 'string' || typeof n.EndpointID !== 'string') continue;
    networks.push({
      NetworkID: n.NetworkID,
      EndpointID: n.EndpointID,
      IPAddress: typeof n.IPAddress === 'string' ? n.IPAddress : '',
      GlobalIPv6Address: typeof n.GlobalIPv6Address === 'string' ? n.GlobalIPv6Address : '',
      Aliases: Array.isArray(n.Aliases) ? n.Aliases.filter((a): a is string => typeof a === 'string') : null,
    });
  }
  return { id: c.Id, name: c.Name.replace(/^\//, ''), networks };
}
