/** Host ports held open while published: a port in use is refused, a held one can be released and held again. */
import t from 'tap';
import net from 'node:net';
import dgram from 'node:dgram';
import { PortReservations } from '../../src/publish/port-reservations.js';

const nowhere = () => undefined;

async function listening(host: string): Promise<{ port: number; close(): Promise<void> }> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen({ host, port: 0 }, resolve));
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

t.test('tcp and udp on loopback', async (t) => {
  const reservations = new PortReservations();
  t.teardown(() => reservations.closeAll());
  const other = await listening('127.0.0.1');
  t.notOk(await reservations.reserve({ protocol: 'tcp', hostIp: '127.0.0.1', hostPort: other.port }, nowhere), 'a port another program listens on is refused');
  await other.close();
  t.ok(await reservations.reserve({ protocol: 'tcp', hostIp: '127.0.0.1', hostPort: other.port }, nowhere), 'free again, held');
  t.ok(await reservations.reserve({ protocol: 'tcp', hostIp: '127.0.0.1', hostPort: other.port }, nowhere), 'holding it twice is a no-op');
  t.ok(await reservations.reserve({ protocol: 'udp', hostIp: '127.0.0.1', hostPort: other.port }, nowhere), 'udp on the same number is apart from tcp');
  const clash = net.createServer();
  const failed = await new Promise<boolean>((resolve) => {
    clash.once('error', () => resolve(true));
    clash.listen({ host: '127.0.0.1', port: other.port }, () => resolve(false));
  });
  clash.close();
  t.ok(failed, 'while held, another program cannot listen on it');
  reservations.release({ protocol: 'tcp', hostIp: '127.0.0.1', hostPort: other.port });
  const after = await new Promise<boolean>((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ host: '127.0.0.1', port: other.port }, () => s.close(() => resolve(true)));
  });
  t.ok(after, 'released: another program can have it');
});

/** A free port number for tcp and udp alike, on every address. */
async function freePort(): Promise<number> {
  for (;;) {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen({ host: '::', port: 0 }, resolve));
    const port = (server.address() as net.AddressInfo).port;
    await new Promise((resolve) => server.close(resolve));
    const udp = dgram.createSocket('udp6');
    const ok = await new Promise<boolean>((resolve) => {
      udp.once('error', () => resolve(false));
      udp.bind({ address: '::', port }, () => resolve(true));
    });
    udp.close();
    if (ok) return port;
  }
}

/** Sends `payload`, half-closes, and returns everything that came back. */
function tcpExchange(host: string, port: number, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, allowHalfOpen: true });
    let got = '';
    socket.on('data', (d) => (got += d));
    socket.on('end', () => resolve(got));
    socket.on('error', reject);
    socket.end(payload);
  });
}

function canListen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ host, port, ipv6Only: host.includes(':') }, () => s.close(() => resolve(true)));
  });
}

t.test('IPv6 host addresses forward to the container (here a server on 127.0.0.1), TCP and UDP', async (t) => {
  const reservations = new PortReservations();
  t.teardown(() => reservations.closeAll());
  // The "container": answers once the client has sent everything, as an HTTP server does.
  const backend = net.createServer({ allowHalfOpen: true }, (s) => {
    let d = '';
    s.on('data', (c) => (d += c));
    s.on('end', () => s.end(`got ${d} from ${s.remoteAddress}`));
  });
  await new Promise<void>((resolve) => backend.listen({ host: '127.0.0.1', port: 0 }, resolve));
  t.teardown(() => backend.close());
  const backendPort = (backend.address() as net.AddressInfo).port;
  let target: { host: string; port: number } | undefined = { host: '127.0.0.1', port: backendPort };
  const port = await freePort();

  t.ok(await reservations.reserve({ protocol: 'tcp', hostIp: '::1', hostPort: port }, () => target), '[::1] held');
  t.equal(await tcpExchange('::1', port, 'hello'), 'got hello from 127.0.0.1', 'a client on [::1] reaches the IPv4 server, which sees the host');
  t.notOk(await canListen('::1', port), 'another program cannot listen on [::1] meanwhile');
  t.ok(await canListen('127.0.0.1', port), 'IPv4 is not held by an IPv6 publication');
  const big = 'x'.repeat(1 << 20);
  t.equal((await tcpExchange('::1', port, big)).length, `got ${big} from 127.0.0.1`.length, 'a megabyte each way, whole');
  target = undefined;
  await t.rejects(tcpExchange('::1', port, 'late').then((r) => (r === '' ? Promise.reject(new Error('closed')) : r)), 'no target (publication changing): the connection is closed');
  target = { host: '127.0.0.1', port: backendPort };
  reservations.release({ protocol: 'tcp', hostIp: '::1', hostPort: port });
  t.ok(await canListen('::1', port), 'released: free again');

  // UDP: an echo "container" that prefixes what it got.
  const echo = dgram.createSocket('udp4');
  echo.on('message', (m, from) => echo.send(`echo ${m}`, from.port, from.address));
  await new Promise<void>((resolve) => echo.bind({ address: '127.0.0.1', port: 0 }, resolve));
  t.teardown(() => echo.close());
  target = { host: '127.0.0.1', port: echo.address().port };
  t.ok(await reservations.reserve({ protocol: 'udp', hostIp: '::', hostPort: port }, () => target), 'udp [::] held');
  const client = dgram.createSocket('udp6');
  t.teardown(() => client.close());
  const answers: string[] = [];
  client.on('message', (m) => answers.push(String(m)));
  await new Promise<void>((resolve) => client.bind({ address: '::1', port: 0 }, resolve));
  for (const word of ['one', 'two']) {
    client.send(word, port, '::1');
    const before = answers.length;
    for (let i = 0; i < 200 && answers.length === before; i++) await new Promise((r) => setTimeout(r, 10));
  }
  t.same(answers, ['echo one', 'echo two'], 'datagrams to [::1] come back from the container, in order, to the sender');
});

t.test("'' holds IPv6 too (where the host has it) and forwards it; '0.0.0.0' holds IPv4 only", async (t) => {
  const reservations = new PortReservations();
  t.teardown(() => reservations.closeAll());
  const backend = net.createServer((s) => s.end('hi'));
  await new Promise<void>((resolve) => backend.listen({ host: '127.0.0.1', port: 0 }, resolve));
  t.teardown(() => backend.close());
  const target = { host: '127.0.0.1', port: (backend.address() as net.AddressInfo).port };
  const port = await freePort();
  t.ok(await reservations.reserve({ protocol: 'tcp', hostIp: '', hostPort: port }, () => target), 'every address held');
  t.notOk(await canListen('0.0.0.0', port), 'IPv4 taken');
  t.notOk(await canListen('::', port), 'IPv6 taken');
  t.equal(await tcpExchange('::1', port, ''), 'hi', '[::1] forwards to the target');
  reservations.release({ protocol: 'tcp', hostIp: '', hostPort: port });
  t.ok((await canListen('0.0.0.0', port)) && (await canListen('::', port)), 'released: both free');

  t.ok(await reservations.reserve({ protocol: 'tcp', hostIp: '0.0.0.0', hostPort: port }, () => target), '0.0.0.0 held');
  t.ok(await canListen('::', port), 'IPv6 left free');
  reservations.release({ protocol: 'tcp', hostIp: '0.0.0.0', hostPort: port });

  // Something else has IPv6 of the port: every address cannot be had, and IPv4 is not kept half-held.
  const other = net.createServer();
  await new Promise<void>((resolve) => other.listen({ host: '::', port, ipv6Only: true }, resolve));
  t.notOk(await reservations.reserve({ protocol: 'tcp', hostIp: '', hostPort: port }, () => target), 'refused when [::] is in use');
  t.ok(await canListen('0.0.0.0', port), 'and IPv4 was let go');
  await new Promise((resolve) => other.close(resolve));
});
