/**
 * JSON-RPC 1.0 peer over one byte stream, as OVSDB uses it (RFC 7047 §4):
 * request ids, replies matched to requests, per-call timeouts, server
 * notifications, and `echo` answered in both directions as a keepalive.
 *
 * One instance lives exactly as long as its socket; reconnecting is the
 * session's job (client.ts), not this layer's.
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import {
  ConnectionClosedError,
  FramingError,
  OvsdbError,
  RequestTimeoutError,
  RpcError,
} from './errors.js';
import { JsonStreamFramer } from './framer.js';
import { silentLogger, type Logger } from './logger.js';

export interface RpcOptions {
  /** Default per-request timeout; 0 waits forever. */
  requestTimeoutMs?: number;
  /**
   * Send our own echo after this long without hearing from the server and
   * drop the connection if that echo is not answered within the same time.
   * 0 disables (ovsdb-server never probes unix sockets either).
   */
  probeIntervalMs?: number;
  maxMessageBytes?: number;
  logger?: Logger;
  /** For log lines and errors. */
  remote?: string;
}

export interface RequestOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

interface Pending {
  method: string;
  resolve(result: unknown): void;
  reject(error: Error): void;
  timer?: NodeJS.Timeout;
  cleanup(): void;
}

export interface RpcEvents {
  notification: [method: string, params: unknown[]];
  close: [error: Error | undefined];
}

export class JsonRpcConnection extends EventEmitter<RpcEvents> {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly framer: JsonStreamFramer;
  private readonly log: Logger;
  private readonly requestTimeoutMs: number;
  private readonly probeIntervalMs: number;
  private probeTimer?: NodeJS.Timeout;
  private lastReceive = Date.now();
  private probeOutstanding = false;
  private closedWith: Error | undefined | null = null;
  readonly remote: string;

  constructor(
    private readonly socket: Duplex,
    options: RpcOptions = {},
  ) {
    super();
    this.framer = new JsonStreamFramer({ maxMessageBytes: options.maxMessageBytes });
    this.log = options.logger ?? silentLogger;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    this.probeIntervalMs = options.probeIntervalMs ?? 0;
    this.remote = options.remote ?? 'ovsdb';

    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.shutdown(err));
    socket.on('close', () =>
      this.shutdown(new ConnectionClosedError(`connection to ${this.remote} closed`, true)),
    );
    if (this.probeIntervalMs > 0) this.scheduleProbe();
  }

  get isOpen(): boolean {
    return this.closedWith === null;
  }

  /** Send a request and resolve with its `result`; rejects with RpcError when the server answers an error. */
  request(method: string, params: unknown[], options: RequestOptions = {}): Promise<unknown> {
    if (this.closedWith !== null) {
      return Promise.reject(
        new ConnectionClosedError(`cannot send ${method}: connection to ${this.remote} is closed`, false, {
          cause: this.closedWith,
        }),
      );
    }
    const id = this.nextId++;
    const timeoutMs = options.timeoutMs ?? this.requestTimeoutMs;
    return new Promise<unknown>((resolve, reject) => {
      const onAbort = () => {
        this.settle(id)?.reject(new OvsdbError(`${method} aborted`, { cause: options.signal?.reason }));
        this.cancelOnServer(method, id);
      };
      const entry: Pending = {
        method,
        resolve,
        reject,
        cleanup: () => {
          if (entry.timer) clearTimeout(entry.timer);
          options.signal?.removeEventListener('abort', onAbort);
        },
      };
      if (timeoutMs > 0) {
        entry.timer = setTimeout(() => {
          this.settle(id)?.reject(new RequestTimeoutError(method, timeoutMs));
          this.cancelOnServer(method, id);
        }, timeoutMs);
      }
      if (options.signal) {
        if (options.signal.aborted) {
          reject(new OvsdbError(`${method} aborted`, { cause: options.signal.reason }));
          return;
        }
        options.signal.addEventListener('abort', onAbort, { once: true });
      }
      this.pending.set(id, entry);
      this.send({ method, params, id });
    });
  }

  notify(method: string, params: unknown[]): void {
    if (this.closedWith === null) this.send({ method, params, id: null });
  }

  /** Close the socket; every pending request fails with ConnectionClosedError. */
  close(reason?: Error): void {
    this.shutdown(reason ?? new ConnectionClosedError(`connection to ${this.remote} closed by client`, true));
  }

  private send(message: object): void {
    this.socket.write(JSON.stringify(message));
  }

  /** A transact that is still parked on the server (a `wait` with a timeout) is released by `cancel`. */
  private cancelOnServer(method: string, id: number): void {
    if (method === 'transact') this.notify('cancel', [id]);
  }

  private settle(id: number): Pending | undefined {
    const entry = this.pending.get(id);
    if (!entry) return undefined;
    this.pending.delete(id);
    entry.cleanup();
    return entry;
  }

  private onData(chunk: Buffer): void {
    this.lastReceive = Date.now();
    this.probeOutstanding = false;
    let messages: unknown[];
    try {
      messages = this.framer.push(chunk);
    } catch (err) {
      this.log.error({ remote: this.remote, err }, 'OVSDB stream is corrupt; closing the connection');
      this.shutdown(err instanceof Error ? err : new FramingError(String(err)));
      return;
    }
    for (const message of messages) {
      if (this.closedWith !== null) return;
      this.dispatch(message);
    }
  }

  private dispatch(message: unknown): void {
    if (typeof message !== 'object' || message === null || Array.isArray(message)) {
      this.protocolError('a JSON-RPC message must be an object', message);
      return;
    }
    const m = message as Record<string, unknown>;
    if (typeof m.method === 'string') {
      const params = Array.isArray(m.params) ? m.params : [];
      if (m.id === null || m.id === undefined) {
        this.emit('notification', m.method, params);
      } else if (m.method === 'echo') {
        this.send({ id: m.id, result: params, error: null });
      } else {
        this.send({ id: m.id, result: null, error: 'unknown method' });
      }
      return;
    }
    if (!('id' in m)) {
      this.protocolError('message is neither a request, a notification nor a reply', message);
      return;
    }
    if (typeof m.id !== 'number') {
      // Replies to our echo probes carry the id we gave them ("echo").
      return;
    }
    const entry = this.settle(m.id);
    if (!entry) {
      this.log.debug({ remote: this.remote, id: m.id }, 'reply for an unknown or expired request');
      return;
    }
    if (m.error !== null && m.error !== undefined) {
      entry.reject(toRpcError(entry.method, m.error));
    } else {
      entry.resolve(m.result);
    }
  }

  private protocolError(what: string, message: unknown): void {
    const excerpt = JSON.stringify(message)?.slice(0, 200);
    this.shutdown(new FramingError(`protocol error from ${this.remote}: ${what}: ${excerpt}`));
  }

  private scheduleProbe(): void {
    this.probeTimer = setTimeout(() => {
      if (this.closedWith !== null) return;
      const idle = Date.now() - this.lastReceive;
      if (idle >= this.probeIntervalMs) {
        if (this.probeOutstanding) {
          this.log.warn({ remote: this.remote, idleMs: idle }, 'OVSDB server stopped answering; reconnecting');
          this.shutdown(new ConnectionClosedError(`no answer from ${this.remote} for ${idle} ms`, true));
          return;
        }
        this.probeOutstanding = true;
        this.lastReceive = Date.now();
        this.send({ method: 'echo', params: [], id: 'echo' });
      }
      this.scheduleProbe();
    }, Math.max(50, this.probeIntervalMs - (Date.now() - this.lastReceive)));
    this.probeTimer.unref();
  }

  private shutdown(error: Error | undefined): void {
    if (this.closedWith !== null) return;
    this.closedWith = error;
    if (this.probeTimer) clearTimeout(this.probeTimer);
    const pending = [...this.pending.entries()];
    this.pending.clear();
    for (const [, entry] of pending) {
      entry.cleanup();
      entry.reject(
        new ConnectionClosedError(
          `${entry.method}: connection to ${this.remote} lost before the reply; the outcome is unknown`,
          true,
          { cause: error },
        ),
      );
    }
    this.socket.destroy();
    this.emit('close', error);
  }
}

/** OVS sends an error as a bare string ("unknown method") or as an <error> object. */
export function toRpcError(method: string, error: unknown): RpcError {
  if (typeof error === 'string') return new RpcError(method, error);
  if (error && typeof error === 'object') {
    const e = error as Record<string, unknown>;
    return new RpcError(
      method,
      typeof e.error === 'string' ? e.error : JSON.stringify(error),
      typeof e.details === 'string' ? e.details : undefined,
      typeof e.syntax === 'string' ? e.syntax : undefined,
    );
  }
  return new RpcError(method, JSON.stringify(error));
}
