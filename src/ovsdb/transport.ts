/**
 * Opens the byte stream to one OVSDB remote: a unix socket, TCP, or mutual
 * TLS (OVS requires a client certificate, like ovn-nbctl -p/-c/-C).
 */
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { OvsdbError } from './errors.js';
import { formatRemote, type Remote } from './remote.js';

export interface TlsFiles {
  privateKey: string;
  certificate: string;
  caCert: string;
  /**
   * Name (DNS name or IP address) the server certificate must carry, for
   * every member of a cluster. Default: each remote's own host. A chain
   * from the right CA alone is not enough: any certificate of the OVN CA
   * (every chassis has one) could otherwise pose as NB.
   */
  serverName?: string;
}

export class ConnectError extends OvsdbError {
  constructor(readonly remote: string, cause: unknown) {
    super(`cannot connect to ${remote}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

export async function openTransport(
  remote: Remote,
  options: { tls?: TlsFiles; timeoutMs: number },
): Promise<Duplex> {
  const name = formatRemote(remote);
  const socket = await connectSocket(remote, options, name);
  if (socket instanceof net.Socket) {
    socket.setNoDelay(true);
    if (remote.kind !== 'unix') socket.setKeepAlive(true, 10_000);
  }
  return socket;
}

async function connectSocket(
  remote: Remote,
  options: { tls?: TlsFiles; timeoutMs: number },
  name: string,
): Promise<Duplex> {
  if (remote.kind === 'ssl') {
    if (!options.tls) {
      throw new ConnectError(name, new Error('ssl remote needs a private key, certificate and CA certificate'));
    }
    const [key, cert, ca] = await Promise.all([
      readFile(options.tls.privateKey),
      readFile(options.tls.certificate),
      readFile(options.tls.caCert),
    ]).catch((err: unknown) => {
      throw new ConnectError(name, err);
    });
    const expected = options.tls.serverName ?? remote.host;
    return waitConnected(
      tls.connect({
        host: remote.host,
        port: remote.port,
        key,
        cert,
        ca,
        // SNI carries DNS names only (RFC 6066), as in OVS's stream-ssl.
        servername: net.isIP(expected) ? undefined : expected,
        rejectUnauthorized: true,
        // Node's own check handles DNS and IP subjectAltNames; the message says which name was expected.
        checkServerIdentity: (_host, peer) => {
          const err = tls.checkServerIdentity(expected, peer);
          return err && new Error(`the server certificate is not for ${expected}: ${err.message}`, { cause: err });
        },
      }),
      'secureConnect',
      options.timeoutMs,
      name,
    );
  }
  const socket =
    remote.kind === 'unix'
      ? net.connect({ path: remote.path })
      : net.connect({ host: remote.host, port: remote.port });
  return waitConnected(socket, 'connect', options.timeoutMs, name);
}

function waitConnected<S extends net.Socket>(
  socket: S,
  event: 'connect' | 'secureConnect',
  timeoutMs: number,
  name: string,
): Promise<S> {
  return new Promise<S>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
    const fail = (err: unknown) => {
      clearTimeout(timer);
      socket.destroy();
      reject(new ConnectError(name, err));
    };
    socket.once('error', fail);
    socket.once(event, () => {
      clearTimeout(timer);
      socket.off('error', fail);
      resolve(socket);
    });
  });
}
