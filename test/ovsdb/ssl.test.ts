/**
 * Mutual TLS against a real ovsdb-server with certificates this test makes.
 */
import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { makePki, type Pki } from '../harness/pki.js';
import { startOvsdbServer, type OvsdbServer } from '../harness/ovsdb-server.js';
import { OvsdbClient } from '../../src/ovsdb/index.js';

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

t.test('a client certificate from another CA is refused, with a clear error', async (t) => {
  const c = new OvsdbClient({
    remote: server.sslRemote!,
    database: 'OVN_Northbound',
    tables: ['Logical_Switch'],
    tls: { privateKey: pki.rogueClientKey, certificate: pki.rogueClientCert, caCert: pki.caCert },
  });
  c.start();
  const err = await c.whenReady(2000).catch((e: unknown) => e);
  await c.close();
  t.type(err, Error);
  t.match(String(err), /no usable OVSDB server/);
});

t.test('a server whose certificate is not signed by our CA is refused', async (t) => {
  const c = new OvsdbClient({
    remote: server.sslRemote!,
    database: 'OVN_Northbound',
    tables: ['Logical_Switch'],
    tls: { privateKey: pki.clientKey, certificate: pki.clientCert, caCert: pki.rogueCaCert },
  });
  c.start();
  const err = await c.whenReady(2000).catch((e: unknown) => e);
  await c.close();
  t.match(String(err), /certificate|no usable OVSDB server/);
});
