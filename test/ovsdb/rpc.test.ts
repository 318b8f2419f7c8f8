/**
 * JSON-RPC peer logic against a scripted peer on a socket pair (pure
 * protocol logic; the real server is exercised in client.test.ts).
 */
import t from 'tap';
import net from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { JsonRpcConnection } from '../../src/ovsdb/rpc.js';
import { ConnectionClosedError, FramingError, RequestTimeoutError, RpcError } from '../../src/ovsdb/errors.js';
import { JsonStreamFramer } from '../../src/ovsdb/framer.js';

interface Peer {
  conn: JsonRpcConnection;
  server: net.Socket;
  received: unknown[];
  next(): Promise<Record<string, unknown>>;
}

async function pair(t: { teardown(fn: () => unknown): void }, options: ConstructorParameters<typeof JsonRpcConnection>[1] = {}): Promise<Peer> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ovn-test-rpc-'));
  const sock = path.join(dir, 's');
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(sock, r));
  const accepted = new Promise<net.Socket>((r) => srv.once('connection', r));
  const client = net.connect(sock);
  await new Promise((r) => client.once('connect', r));
  const server = await accepted;
  const framer = new JsonStreamFramer();
  const received: unknown[] = [];
  const waiters: ((m: Record<string, unknown>) => void)[] = [];
  server.on('data', (chunk: Buffer) => {
    for (const m of framer.push(chunk)) {
      const w = waiters.shift();
      if (w) w(m as Record<string, unknown>);
      else received.push(m);
    }
  });
  const conn = new JsonRpcConnection(client, { remote: 'test', ...options });
  t.teardown(async () => {
    conn.close();
    server.destroy();
    await new Promise((r) => srv.close(r));
    await rm(dir, { recursive: true, force: true });
  });
  return {
    conn,
    server,
    received,
    next: () =>
      new Promise((resolve) => {
        const m = received.shift();
        if (m) resolve(m as Record<string, unknown>);
        else waiters.push(resolve);
      }),
  };
}

t.test('replies are matched by id, even out of order and split across writes', async (t) => {
  const p = await pair(t);
  const a = p.conn.request('list_dbs', []);
  const b = p.conn.request('echo', ['x']);
  const ma = await p.next();
  const mb = await p.next();
  t.same(ma, { method: 'list_dbs', params: [], id: ma.id });
  const replyB = JSON.stringify({ id: mb.id, result: ['x'], error: null });
  const replyA = JSON.stringify({ id: ma.id, result: ['OVN_Northbound'], error: null });
  const both = Buffer.from(replyB + replyA);
  p.server.write(both.subarray(0, 7));
  p.server.write(both.subarray(7));
  t.same(await a, ['OVN_Northbound']);
  t.same(await b, ['x']);
});

t.test('server errors as a string or an object become RpcError', async (t) => {
  const p = await pair(t);
  const a = p.conn.request('frobnicate', []).catch((e: unknown) => e);
  const ma = await p.next();
  p.server.write(JSON.stringify({ id: ma.id, error: 'unknown method' }));
  const ea = (await a) as RpcError;
  t.type(ea, RpcError);
  t.equal(ea.error, 'unknown method');
  const b = p.conn.request('transact', ['No_Such_DB']).catch((e: unknown) => e);
  const mb = await p.next();
  p.server.write(JSON.stringify({ id: mb.id, result: null, error: { error: 'unknown database', details: 'transact request specifies unknown database No_Such_DB' } }));
  const eb = (await b) as RpcError;
  t.equal(eb.error, 'unknown database');
  t.match(eb.message, /No_Such_DB/);
});

t.test('echo from the server is answered at once; other requests get "unknown method"', async (t) => {
  const p = await pair(t);
  p.server.write(JSON.stringify({ id: 'echo', method: 'echo', params: [] }));
  t.same(await p.next(), { id: 'echo', result: [], error: null });
  p.server.write(JSON.stringify({ id: 9, method: 'lock', params: ['x'] }));
  t.same(await p.next(), { id: 9, result: null, error: 'unknown method' });
});

t.test('notifications are emitted in order with their params', async (t) => {
  const p = await pair(t);
  const seen: unknown[] = [];
  p.conn.on('notification', (method, params) => seen.push([method, params]));
  p.server.write('{"id":null,"method":"update2","params":["m",{"a":1}]} {"id":null,"method":"locked","params":["l"]}');
  await new Promise((r) => setTimeout(r, 50));
  t.same(seen, [
    ['update2', ['m', { a: 1 }]],
    ['locked', ['l']],
  ]);
});

t.test('a timed-out transact is canceled on the server', async (t) => {
  const p = await pair(t);
  const r = p.conn.request('transact', ['db'], { timeoutMs: 50 }).catch((e: unknown) => e);
  const m = await p.next();
  t.type(await r, RequestTimeoutError);
  t.same(await p.next(), { method: 'cancel', params: [m.id], id: null });
});

t.test('closing fails pending requests with outcome unknown; later requests fail fast', async (t) => {
  const p = await pair(t);
  const r = p.conn.request('transact', ['db']).catch((e: unknown) => e);
  await p.next();
  p.server.destroy();
  const err = (await r) as ConnectionClosedError;
  t.type(err, ConnectionClosedError);
  t.equal(err.outcomeUnknown, true);
  const late = (await p.conn.request('echo', []).catch((e: unknown) => e)) as ConnectionClosedError;
  t.type(late, ConnectionClosedError);
  t.equal(late.outcomeUnknown, false, 'never sent');
});

t.test('garbage from the server closes the connection with a FramingError', async (t) => {
  const p = await pair(t);
  const closed = new Promise<Error | undefined>((r) => p.conn.once('close', r));
  const pending = p.conn.request('echo', []).catch((e: unknown) => e);
  p.server.write('}garbage');
  t.type(await closed, FramingError);
  t.type(await pending, ConnectionClosedError);
});

t.test('the inactivity probe sends echo and gives up on a silent peer', async (t) => {
  const p = await pair(t, { probeIntervalMs: 100 });
  const closed = new Promise<Error | undefined>((r) => p.conn.once('close', r));
  const probe = await p.next();
  t.same(probe, { method: 'echo', params: [], id: 'echo' });
  const err = await closed;
  t.type(err, ConnectionClosedError);
  t.match(String(err?.message), /no answer/);
});
