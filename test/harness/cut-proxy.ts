/**
 * A TCP proxy in front of an ovsdb-server that loses one transaction's reply.
 *
 * It forwards JSON-RPC messages both ways. Armed, it lets the next matching
 * `transact` through to the server, withholds everything the server sends
 * the client from then on, and as soon as the server's reply to that
 * transact has come (so the server has committed it, or refused it), it cuts
 * the client's connection. The client sees the connection drop with the
 * outcome unknown (ovsdb(7): writes are at-least-once), reconnects through
 * the proxy, and re-runs its transaction's closure.
 */
import net from 'node:net';
import { JsonStreamFramer } from '../../src/ovsdb/framer.js';
import { registerCleanup } from './process.js';

export interface CutOptions {
  /** Which transact to cut, by its params ([database, ...operations]); default: the next one. */
  match?: (params: unknown[]) => boolean;
  /** Run after the cut, before any client gets through again: what other hosts do meanwhile. */
  meanwhile?: () => Promise<void>;
  /** Reject when no matching transact came within this time (default 15 s). */
  timeoutMs?: number;
}

export interface Cut {
  /** The operations of the transact whose reply was lost. */
  operations: unknown[];
  /** The reply the client never got. */
  reply: Record<string, unknown>;
}

export interface CutProxy {
  /** The remote to give OvsdbClient: `tcp:127.0.0.1:<port>`. */
  readonly remote: string;
  /** Connections cut so far. */
  readonly cuts: number;
  /** Cut the next matching transact; resolves once it is cut and `meanwhile` has run. */
  arm(options?: CutOptions): Promise<Cut>;
  close(): Promise<void>;
}

/** A matcher for CutOptions.match: the transact's comment operation matches `pattern`. */
export function commentMatches(pattern: RegExp): (params: unknown[]) => boolean {
  return (params) =>
    params.some((op) => {
      const o = op as { op?: unknown; comment?: unknown } | null;
      return o?.op === 'comment' && typeof o.comment === 'string' && pattern.test(o.comment);
    });
}

interface Armed {
  options: CutOptions;
  resolve: (cut: Cut) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/** Start a proxy to `upstream` (`tcp:HOST:PORT`). */
export async function startCutProxy(upstream: string): Promise<CutProxy> {
  const m = /^tcp:([^:]+):(\d+)$/.exec(upstream);
  if (!m) throw new Error(`cut proxy: upstream must be tcp:HOST:PORT, not ${upstream}`);
  const host = m[1]!;
  const port = Number(m[2]);
  const sockets = new Set<net.Socket>();
  let armed: Armed | undefined;
  let cuts = 0;
  // New connections wait here while `meanwhile` runs.
  let gate: Promise<void> = Promise.resolve();

  const track = (socket: net.Socket): net.Socket => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    return socket;
  };

  const relay = (client: net.Socket): void => {
    if (client.destroyed) return;
    const server = track(net.connect(port, host));
    const fromClient = new JsonStreamFramer();
    const fromServer = new JsonStreamFramer();
    // The transact whose reply this connection is to lose, once it has gone to the server.
    let target: { id: unknown; params: unknown[]; armed: Armed } | undefined;

    client.on('data', (chunk: Buffer) => {
      for (const msg of fromClient.push(chunk) as Record<string, unknown>[]) {
        const params = msg.params;
        if (armed && !target && msg.method === 'transact' && Array.isArray(params) && (armed.options.match?.(params) ?? true)) {
          target = { id: msg.id, params, armed };
          armed = undefined;
        }
        server.write(JSON.stringify(msg));
      }
    });
    server.on('data', (chunk: Buffer) => {
      for (const msg of fromServer.push(chunk) as Record<string, unknown>[]) {
        if (!target) {
          client.write(JSON.stringify(msg));
          continue;
        }
        const isReply = msg.method === undefined && JSON.stringify(msg.id) === JSON.stringify(target.id);
        if (!isReply) continue;
        const { params, armed: cut } = target;
        clearTimeout(cut.timer);
        cuts++;
        let open: () => void = () => undefined;
        gate = new Promise((resolve) => (open = resolve));
        client.destroy();
        server.destroy();
        void (async () => {
          try {
            await cut.options.meanwhile?.();
            cut.resolve({ operations: params.slice(1), reply: msg });
          } catch (err) {
            cut.reject(err as Error);
          } finally {
            open();
          }
        })();
        return;
      }
    });
    client.on('close', () => server.destroy());
    server.on('close', () => client.destroy());
    client.resume();
  };

  const listener = net.createServer((client) => {
    track(client).pause();
    void gate.then(() => relay(client));
  });
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(0, '127.0.0.1', () => resolve());
  });
  const address = listener.address() as net.AddressInfo;

  const close = async (): Promise<void> => {
    unregister();
    if (armed) {
      clearTimeout(armed.timer);
      armed.reject(new Error('cut proxy closed before a transact to cut came'));
      armed = undefined;
    }
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => listener.close(() => resolve()));
  };
  const unregister = registerCleanup(close);

  return {
    remote: `tcp:127.0.0.1:${address.port}`,
    get cuts() {
      return cuts;
    },
    arm(options: CutOptions = {}): Promise<Cut> {
      if (armed) return Promise.reject(new Error('cut proxy is armed already'));
      return new Promise<Cut>((resolve, reject) => {
        const timeoutMs = options.timeoutMs ?? 15_000;
        const entry: Armed = {
          options,
          resolve,
          reject,
          timer: setTimeout(() => {
            if (armed === entry) armed = undefined;
            reject(new Error(`cut proxy: no transact to cut (or no reply to it) within ${timeoutMs} ms`));
          }, timeoutMs),
        };
        armed = entry;
      });
    },
    close,
  };
}
