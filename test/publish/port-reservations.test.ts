/** Host ports held open while published: a port in use is refused, a held one can be released and held again. */
import t from 'tap';
import net from 'node:net';
import { PortReservations } from '../../src/publish/port-reservations.js';

async function listening(host: string): Promise<{ port: number; close(): Promise<void> }> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen({ host, port: 0 }, resolve));
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

t.test('tcp and udp on loopback', async (t) => {
  const reservations = new PortReservations();
  t.teardown(() => reservations.closeAll());
  const other = await listening('127.0.0.1');
  t.notOk(await reservations.reserve({ protocol: 'tcp', hostIp: '127.0.0.1', hostPort: other.port }), 'a port another program listens on is refused');
  await other.close();
  t.ok(await reservations.reserve({ protocol: 'tcp', hostIp: '127.0.0.1', hostPort: other.port }), 'free again, held');
  t.ok(await reservations.reserve({ protocol: 'tcp', hostIp: '127.0.0.1', hostPort: other.port }), 'holding it twice is a no-op');
  t.ok(await reservations.reserve({ protocol: 'udp', hostIp: '127.0.0.1', hostPort: other.port }), 'udp on the same number is apart from tcp');
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
