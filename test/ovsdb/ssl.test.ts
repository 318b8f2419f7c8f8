/**
 * Mutual TLS against a real ovsdb-server with certificates this test makes.
 */
import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { makePki, type Pki } from '../harness/pki.js';
import { startOvsdbServer, type OvsdbServer } from '../harness/ovsdb-server.js';
import { OvsdbClient, type TlsFiles } from '../../src/ovsdb/index.js';

let dir: string;
let pki: Pki;
let server: OvsdbServer;

t.before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'ovn-test-pki-'));
  pki = await makePki(dir);
  server = await startOvsdbServer({ schema: 'nb', ssl: pki });
});
t.teardown(async () => {
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
async function refusal(tls: TlsFiles): Promise<unknown> {
  const c = new OvsdbClient({ remote: server.sslRemote!, database: 'OVN_Northbound', tables: ['Logical_Switch'], tls });
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
