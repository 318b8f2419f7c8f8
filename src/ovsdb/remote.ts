/**
 * OVSDB remote syntax, as accepted by ovn-nbctl/ovs-vsctl `--db` (ovsdb(7),
 * "Connection Methods"): `unix:PATH`, `tcp:HOST:PORT`, `ssl:HOST:PORT`, and a
 * comma-separated list of those for the members of a clustered database.
 */

import { isIPv6 } from 'node:net';
import { RemoteSyntaxError } from './errors.js';

export type Remote =
  | { kind: 'unix'; path: string }
  | { kind: 'tcp'; host: string; port: number }
  | { kind: 'ssl'; host: string; port: number };

// Host names and IPv4 literals. Anything else (spaces, slashes, a stray colon
// from an unbracketed IPv6 address) is far more likely a typo than a real
// host, and failing at parse time beats a confusing DNS error at connect time.
const HOST_RE = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$/;

const PASSIVE = new Set(['punix', 'ptcp', 'pssl']);

/** Parse one remote or a comma-separated list of them (all members of a cluster). */
export function parseRemotes(spec: string): Remote[] {
  if (spec.trim() === '') {
    throw new RemoteSyntaxError(spec, 'empty remote');
  }
  const entries = spec.split(',');
  return entries.map((entry, index) => {
    if (entry.trim() === '') {
      throw new RemoteSyntaxError(
        spec,
        `entry ${index + 1} of ${entries.length} is empty (stray comma?)`,
      );
    }
    return parseOne(entry.trim());
  });
}

/** Parse exactly one remote. */
export function parseRemote(spec: string): Remote {
  const entry = spec.trim();
  if (entry === '') {
    throw new RemoteSyntaxError(spec, 'empty remote');
  }
  if (entry.includes(',')) {
    throw new RemoteSyntaxError(spec, 'this is a list of remotes; use parseRemotes');
  }
  return parseOne(entry);
}

export function formatRemote(remote: Remote): string {
  switch (remote.kind) {
    case 'unix':
      return `unix:${remote.path}`;
    case 'tcp':
    case 'ssl': {
      const host = remote.host.includes(':') ? `[${remote.host}]` : remote.host;
      return `${remote.kind}:${host}:${remote.port}`;
    }
  }
}

function parseOne(entry: string): Remote {
  const colon = entry.indexOf(':');
  if (colon <= 0) {
    throw new RemoteSyntaxError(
      entry,
      'expected METHOD:ARGS with METHOD one of unix, tcp, ssl (e.g. "tcp:127.0.0.1:6641")',
    );
  }
  const scheme = entry.slice(0, colon);
  const rest = entry.slice(colon + 1);

  if (PASSIVE.has(scheme)) {
    throw new RemoteSyntaxError(
      entry,
      `"${scheme}:" is a passive (listening) remote that only ovsdb-server uses; ` +
        `a client connects with "${scheme.slice(1)}:"`,
    );
  }

  switch (scheme) {
    case 'unix':
      if (rest === '') {
        throw new RemoteSyntaxError(entry, 'unix: needs a socket path');
      }
      return { kind: 'unix', path: rest };
    case 'tcp':
    case 'ssl': {
      const { host, port } = parseHostPort(entry, scheme, rest);
      return { kind: scheme, host, port };
    }
    default:
      throw new RemoteSyntaxError(
        entry,
        `unknown connection method "${scheme}" (expected unix, tcp or ssl)`,
      );
  }
}

function parseHostPort(entry: string, scheme: string, rest: string): { host: string; port: number } {
  let host: string;
  let portText: string;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close === -1) {
      throw new RemoteSyntaxError(entry, 'missing "]" after IPv6 address');
    }
    host = rest.slice(1, close);
    if (!isIPv6(host)) {
      throw new RemoteSyntaxError(entry, `"${host}" in brackets is not an IPv6 address`);
    }
    const after = rest.slice(close + 1);
    if (!after.startsWith(':')) {
      throw new RemoteSyntaxError(
        entry,
        after === '' ? `${scheme}: needs a port (e.g. "${scheme}:[::1]:6641")` : `unexpected "${after}" after "]"`,
      );
    }
    portText = after.slice(1);
  } else {
    const colon = rest.lastIndexOf(':');
    if (colon === -1) {
      throw new RemoteSyntaxError(entry, `${scheme}: needs HOST:PORT (e.g. "${scheme}:127.0.0.1:6641")`);
    }
    host = rest.slice(0, colon);
    portText = rest.slice(colon + 1);
    if (host === '') {
      throw new RemoteSyntaxError(entry, 'missing host');
    }
    if (host.includes(':')) {
      throw new RemoteSyntaxError(
        entry,
        `IPv6 addresses must be in brackets (e.g. "${scheme}:[${host}]:${portText || '6641'}")`,
      );
    }
    if (!HOST_RE.test(host)) {
      throw new RemoteSyntaxError(entry, `"${host}" is not a valid host name or address`);
    }
  }
  return { host, port: parsePort(entry, portText) };
}

function parsePort(entry: string, text: string): number {
  if (text === '') {
    throw new RemoteSyntaxError(entry, 'missing port');
  }
  // Digits only: Number() would also take "0x1f", "1e3" or " 80".
  if (!/^[0-9]+$/.test(text)) {
    throw new RemoteSyntaxError(entry, `port "${text}" is not a number`);
  }
  const port = Number(text);
  if (port < 1 || port > 65535) {
    throw new RemoteSyntaxError(entry, `port ${text} is out of range 1..65535`);
  }
  return port;
}
