/**
 * A throw-away PKI for SSL tests, made with the openssl CLI. OVS SSL is mutual
 * TLS, so both sides need a certificate from a CA the other trusts; the rogue
 * CA and its client certificate are for the tests that must be refused.
 * P-256 keys: generated in milliseconds and accepted by OVS and Node alike.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { run } from './process.js';

export interface Pki {
  caCert: string;
  /** The CA's key, to issue more certificates (serverCertFor). */
  caKey: string;
  serverKey: string;
  serverCert: string;
  clientKey: string;
  clientCert: string;
  rogueClientKey: string;
  rogueClientCert: string;
  rogueCaCert: string;
}

const DAYS = '2';

async function genKey(file: string): Promise<string> {
  await run('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file]);
  return file;
}

async function makeCa(dir: string, name: string): Promise<{ key: string; cert: string }> {
  const key = await genKey(path.join(dir, `${name}.key`));
  const cert = path.join(dir, `${name}.pem`);
  await run('openssl', ['req', '-x509', '-new', '-key', key, '-days', DAYS, '-subj', `/CN=${name}`, '-out', cert]);
  return { key, cert };
}

async function issue(
  dir: string,
  name: string,
  cn: string,
  ca: { key: string; cert: string },
  extensions: string,
): Promise<{ key: string; cert: string }> {
  const key = await genKey(path.join(dir, `${name}.key`));
  const csr = path.join(dir, `${name}.csr`);
  const ext = path.join(dir, `${name}.ext`);
  const cert = path.join(dir, `${name}.pem`);
  await writeFile(ext, extensions);
  await run('openssl', ['req', '-new', '-key', key, '-subj', `/CN=${cn}`, '-out', csr]);
  await run('openssl', [
    'x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key,
    // A random serial instead of a .srl file: the two CAs are issued from in parallel.
    '-set_serial', `0x${Math.floor(Math.random() * 2 ** 48).toString(16)}`,
    '-days', DAYS, '-extfile', ext, '-out', cert,
  ]);
  return { key, cert };
}

function serverExtensions(altNames: string[]): string {
  return `basicConstraints=CA:FALSE\nsubjectAltName=${altNames.join(',')}\nextendedKeyUsage=serverAuth\n`;
}

export async function makePki(dir: string): Promise<Pki> {
  const [ca, rogueCa] = await Promise.all([makeCa(dir, 'ca'), makeCa(dir, 'rogue-ca')]);
  const [server, client, rogueClient] = await Promise.all([
    issue(dir, 'server', 'ovsdb-server', ca, serverExtensions(['IP:127.0.0.1'])),
    issue(dir, 'client', 'ovsdb-client', ca, 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n'),
    issue(dir, 'rogue-client', 'ovsdb-client', rogueCa, 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n'),
  ]);
  return {
    caCert: ca.cert,
    caKey: ca.key,
    serverKey: server.key,
    serverCert: server.cert,
    clientKey: client.key,
    clientCert: client.cert,
    rogueClientKey: rogueClient.key,
    rogueClientCert: rogueClient.cert,
    rogueCaCert: rogueCa.cert,
  };
}

/**
 * The same PKI with another server certificate from its CA, naming only
 * `altNames` (e.g. ["DNS:localhost"]): for host-name checks.
 */
export async function serverCertFor(pki: Pki, dir: string, name: string, altNames: string[]): Promise<Pki> {
  const server = await issue(dir, name, 'ovsdb-server', { key: pki.caKey, cert: pki.caCert }, serverExtensions(altNames));
  return { ...pki, serverKey: server.key, serverCert: server.cert };
}
