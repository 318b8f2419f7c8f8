/**
 * Mutual TLS against a real ovsdb-server with certificates this test makes.
 */
import t, { type Test } from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { makePki, serverCertFor, type Pki } from '../harness/pki.js';
import { startOvsdbServer, type OvsdbServer } from '../harness/ovsdb-server.js';
import { OvsdbClient, type TlsFiles } from '../../src/ovsdb/index.js';
import { parseCommandLine } from '../../src/cli/options.js';

let dir: string;
let pki: Pki;
let server: OvsdbServer;
/** A second NB whose certificate (same CA) names only DNS:localhost, not 127.0.0.1. */
let named: OvsdbServer;

t.before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'ovn-test-pki-'));
  pki = await makePki(dir);
  server = await startOvsdbServer({ schema: 'nb', ssl: pki });
  named = await startOvsdbServer({ schema: 'nb', ssl: await serverCertFor(pki, dir, 'named-server', ['DNS:localhost']) });
});
t.teardown(async () => {
  await named?.stop();
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});

t.test('connects and transacts over ssl with a certificate signed by the CA', async (t) => {
  const c = await OvsdbClient.connect(
    {
      remote: server.sslRemote!,
      database: 'OVN_Northbound',
      tables: ['Logical_Switch'],
      tls: { privateKey: pki.clientKey, certificate: pki.clientCert, caCert: pki.caCert },
    },
    10_000,
  );
  t.teardown(() => c.close());
  await c.transaction((tx) => {
    tx.insert('Logical_Switch', { name: 'over-ssl' });
  });
  t.ok([...c.replica.rows('Logical_Switch')].some((r) => r.name === 'over-ssl'));
});

/** Try to connect with these files; resolve with the error the client gave up with. */
async function refusal(tls: TlsFiles, remote = server.sslRemote!): Promise<unknown> {
  const c = new OvsdbClient({ remote, database: 'OVN_Northbound', tables: ['Logical_Switch'], tls });
  c.start();
  const err = await c.whenReady(2000).catch((e: unknown) => e);
  await c.close();
  return err;
}

t.test('a client certificate from another CA is refused, with a clear error', async (t) => {
  const err = await refusal({ privateKey: pki.rogueClientKey, certificate: pki.rogueClientCert, caCert: pki.caCert });
  t.type(err, Error);
  t.match(String(err), /no usable OVSDB server for OVN_Northbound at ssl:127\.0\.0\.1:\d+/);
});

t.test('a server whose certificate is not signed by our CA is refused', async (t) => {
  const err = await refusal({ privateKey: pki.clientKey, certificate: pki.clientCert, caCert: pki.rogueCaCert });
  t.type(err, Error);
  t.match(String(err), /certificate/, 'the error names the certificate problem');
});

const files = (): TlsFiles => ({ privateKey: pki.clientKey, certificate: pki.clientCert, caCert: pki.caCert });
/** The remote of a server with its host replaced ("ssl:127.0.0.1:P" -> "ssl:localhost:P"). */
const at = (srv: OvsdbServer, host: string) => srv.sslRemote!.replace('127.0.0.1', host);

/** Connect, write a row and see it come back: the session is really up. */
async function transacts(t: Test, remote: string, tls: TlsFiles): Promise<void> {
  const c = await OvsdbClient.connect({ remote, database: 'OVN_Northbound', tables: ['Logical_Switch'], tls }, 10_000);
  t.teardown(() => c.close());
  const name = `ls-${Math.random().toString(16).slice(2, 10)}`;
  await c.transaction((tx) => {
    tx.insert('Logical_Switch', { name });
  });
  t.ok([...c.replica.rows('Logical_Switch')].some((r) => r.name === name), `${remote}: connected and transacted`);
}

/** The TLS files as the command line builds them, with these extra flags. */
function tlsFromFlags(extra: string[]): TlsFiles {
  const parsed = parseCommandLine(
    ['--ovn-nb-private-key', pki.clientKey, '--ovn-nb-certificate', pki.clientCert, '--ovn-nb-ca-cert', pki.caCert, ...extra],
    {},
  );
  if (parsed.kind !== 'run' || !parsed.config.nbTls) throw new Error('expected TLS settings');
  return parsed.config.nbTls;
}

t.test('host names: the server certificate must name the host of the remote', async (t) => {
  // Same CA, valid chain, but the certificate names localhost only: it must not pass for 127.0.0.1.
  const byIp = await refusal(files(), named.sslRemote!);
  t.type(byIp, Error);
  t.match(String(byIp), /the server certificate is not for 127\.0\.0\.1/, 'refused, naming the host it expected');
  const byName = await refusal(files(), at(server, 'localhost'));
  t.match(String(byName), /the server certificate is not for localhost/, 'an IP-only certificate does not pass for a DNS name');
  await transacts(t, at(named, 'localhost'), files());
  await transacts(t, server.sslRemote!, files());
});

t.test('--ovn-nb-server-name sets the name the certificate must carry, instead of the host', async (t) => {
  await transacts(t, named.sslRemote!, tlsFromFlags(['--ovn-nb-server-name', 'localhost']));
  const err = await refusal(tlsFromFlags(['--ovn-nb-server-name', 'nb.example.test']), at(named, 'localhost'));
  t.match(String(err), /the server certificate is not for nb\.example\.test/, 'the name replaces the host: localhost no longer passes');
  const ip = await refusal(tlsFromFlags(['--ovn-nb-server-name', 'localhost']), server.sslRemote!);
  t.match(String(ip), /not for localhost/);
});

t.test('a RAFT list of ssl: remotes: each member is checked against its own host', async (t) => {
  // Every member's certificate names its own host: fine, whichever member the client picks.
  await transacts(t, `${at(named, 'localhost')},${server.sslRemote!}`, files());
  // Each member's certificate names the other's host: no member passes.
  const err = await refusal(files(), `${named.sslRemote!},${at(server, 'localhost')}`);
  t.match(String(err), /the server certificate is not for/);
});
