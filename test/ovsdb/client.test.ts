/**
 * The OVSDB client against a real ovsdb-server with OVN's NB schema:
 * transactions, typed errors, a second client seeing monitor updates,
 * optimistic concurrency, and the server killed and restarted underneath.
 */
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { startOvsdbServer, type OvsdbServer } from '../harness/ovsdb-server.js';
import { run } from '../harness/process.js';
import {
  ConnectionClosedError,
  OvsdbClient,
  RequestTimeoutError,
  RpcError,
  TransactionError,
  type Condition,
  type OvsdbClientOptions,
  type Transaction,
  type RowChange,
  newRowUuid,
} from '../../src/ovsdb/index.js';

const NB_TABLES = ['NB_Global', 'Logical_Switch', 'Logical_Switch_Port'];

function options(remote: string, extra: Partial<OvsdbClientOptions> = {}): OvsdbClientOptions {
  return {
    remote,
    database: 'OVN_Northbound',
    tables: NB_TABLES,
    indexes: {
      Logical_Switch: { columns: ['name'], externalIds: ['test:id'] },
      Logical_Switch_Port: { externalIds: ['test:id'] },
    },
    requestTimeoutMs: 10_000,
    backoff: { initialMs: 50, maxMs: 500 },
    ...extra,
  };
}

let server: OvsdbServer;
const clients: OvsdbClient[] = [];
async function connect(extra: Partial<OvsdbClientOptions> = {}): Promise<OvsdbClient> {
  const c = await OvsdbClient.connect(options(server.unixRemote, extra), 10_000);
  clients.push(c);
  return c;
}

t.before(async () => {
  server = await startOvsdbServer({ schema: 'nb', tcp: true });
});
t.teardown(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await server.stop();
});

/** Insert a switch with one port in one transaction (a port must be referenced to survive). */
async function addSwitch(c: OvsdbClient, name: string, portName: string) {
  const { result } = await c.transaction((tx) => {
    const port = tx.insert('Logical_Switch_Port', {
      name: portName,
      addresses: ['0a:00:00:00:00:01 10.0.0.2'],
      external_ids: new Map([['test:id', portName]]),
    });
    const ls = tx.insert('Logical_Switch', {
      name,
      ports: [port],
      external_ids: new Map([['test:id', name]]),
    });
    return { port, ls };
  });
  return result!;
}

t.test('list_dbs, get_schema, echo', async (t) => {
  const c = await connect();
  t.same((await c.listDbs()).sort(), ['OVN_Northbound', '_Server']);
  t.same(await c.echo(['ping', 1]), ['ping', 1]);
  t.equal(c.schema.name, 'OVN_Northbound');
  t.ok(c.schema.tables.get('Logical_Switch_Port')?.columns.has('port_security'));
  const err = await c.call('get_schema', ['No_Such_DB']).catch((e: unknown) => e);
  t.type(err, RpcError);
  t.equal((err as RpcError).error, 'unknown database');
});

t.test('a transaction is visible in the replica when it resolves, with real uuids', async (t) => {
  const c = await connect();
  const { value, result } = await c.transaction((tx) => {
    const port = tx.insert('Logical_Switch_Port', { name: 'p-visible', addresses: ['dynamic'] });
    const ls = tx.insert('Logical_Switch', {
      name: 'ls-visible',
      ports: [port],
      other_config: new Map([['subnet', '10.9.0.0/24']]),
    });
    return { port, ls };
  });
  const lsUuid = result!.uuidOf(value.ls);
  const portUuid = result!.uuidOf(value.port);
  const ls = c.replica.get('Logical_Switch', lsUuid);
  t.ok(ls, 'switch is in the replica already');
  t.same(ls!.ports, [portUuid]);
  t.same(ls!.other_config, new Map([['subnet', '10.9.0.0/24']]));
  const port = c.replica.findOne('Logical_Switch_Port', 'name', 'p-visible');
  t.equal(port?._uuid, portUuid);
  t.same(port?.addresses, ['dynamic']);
  t.equal(port?.up, null, 'unset optional column decodes to null');
  t.same(c.replica.findBy('Logical_Switch', 'name', 'ls-visible').map((r) => r._uuid), [lsUuid]);
});

t.test('a second client sees inserts, modifications and deletes', async (t) => {
  const a = await connect();
  const b = await connect();
  const seen: RowChange[] = [];
  b.on('change', (changes) => seen.push(...changes));

  await addSwitch(a, 'ls-shared', 'p-shared');
  const row = await b.replica.waitFor(() => b.replica.findOne('Logical_Switch_Port', 'name', 'p-shared'), {
    timeoutMs: 5000,
    what: 'p-shared in B',
  });
  t.same(row.addresses, ['0a:00:00:00:00:01 10.0.0.2']);
  t.ok(seen.some((ch) => ch.table === 'Logical_Switch' && ch.new?.name === 'ls-shared' && !ch.old));

  // Set column toggled by a diff, map key replaced and added.
  await a.transaction((tx) =>
    tx.update('Logical_Switch_Port', [['name', '==', 'p-shared']], {
      addresses: ['0a:00:00:00:00:01 10.0.0.2', 'unknown'],
      external_ids: new Map([
        ['test:id', 'p-shared-2'],
        ['extra', 'x'],
      ]),
    }),
  );
  const modified = await b.replica.waitFor(
    () => {
      const p = b.replica.findOne('Logical_Switch_Port', 'name', 'p-shared');
      return p && Array.isArray(p.addresses) && p.addresses.length === 2 ? p : undefined;
    },
    { timeoutMs: 5000, what: 'modification in B' },
  );
  t.same([...(modified.addresses as string[])].sort(), ['0a:00:00:00:00:01 10.0.0.2', 'unknown']);
  t.same(modified.external_ids, new Map([
    ['test:id', 'p-shared-2'],
    ['extra', 'x'],
  ]));
  t.same(b.replica.findByExternalId('Logical_Switch_Port', 'test:id', 'p-shared-2').length, 1);
  t.same(b.replica.findByExternalId('Logical_Switch_Port', 'test:id', 'p-shared').length, 0, 'old index key gone');

  // Deleting the switch garbage-collects the non-root port too.
  await a.transaction((tx) => tx.delete('Logical_Switch', [['_uuid', '==', lsUuidOf(a, 'ls-shared')]]));
  await b.replica.waitFor(() => (b.replica.findOne('Logical_Switch_Port', 'name', 'p-shared') ? undefined : true), {
    timeoutMs: 5000,
    what: 'delete in B',
  });
  t.notOk(b.replica.findOne('Logical_Switch', 'name', 'ls-shared'));
});

t.test('where: only rows matching one of the clauses are replicated, and a row leaves when it stops matching', async (t) => {
  const a = await connect();
  const mine: Condition = ['external_ids', 'includes', new Map([['owner', 'me']])];
  const b = await connect({ where: { Logical_Switch_Port: [mine, ['name', '==', 'p-named']] } });
  const port = (tx: Transaction, name: string, ids: [string, string][]) =>
    tx.insert('Logical_Switch_Port', { name, external_ids: new Map(ids) });
  await a.transaction((tx) => {
    const ports = [port(tx, 'p-mine', [['owner', 'me']]), port(tx, 'p-other', [['owner', 'else']]), port(tx, 'p-named', [])];
    tx.insert('Logical_Switch', { name: 'ls-scoped', ports });
  });
  // One transaction, one update: when p-mine is there, whatever else matched is too.
  await b.replica.waitFor(() => b.replica.findOne('Logical_Switch_Port', 'name', 'p-mine'), { timeoutMs: 5000, what: 'p-mine in B' });
  t.ok(b.replica.findOne('Logical_Switch_Port', 'name', 'p-named'), 'the clauses are alternatives: a row matching the second is there');
  t.notOk(b.replica.findOne('Logical_Switch_Port', 'name', 'p-other'), 'a row matching neither is not');
  t.equal((b.replica.findOne('Logical_Switch', 'name', 'ls-scoped')?.ports as string[]).length, 3, 'a table without a condition is whole, references to unseen rows included');

  await a.transaction((tx) => {
    tx.update('Logical_Switch_Port', [['name', '==', 'p-other']], { external_ids: new Map([['owner', 'me']]) });
    tx.update('Logical_Switch_Port', [['name', '==', 'p-mine']], { external_ids: new Map() });
  });
  await b.replica.waitFor(() => b.replica.findOne('Logical_Switch_Port', 'name', 'p-other'), { timeoutMs: 5000, what: 'p-other in B' });
  t.notOk(b.replica.findOne('Logical_Switch_Port', 'name', 'p-mine'), 'a row that stopped matching left in the same update');
  t.ok(['p-mine', 'p-other', 'p-named'].every((n) => a.replica.findOne('Logical_Switch_Port', 'name', n)), 'an unscoped client has them all');
});

t.test('setConditions: rows come and go with the new clauses, and a transaction after it sees them', async (t) => {
  const a = await connect();
  const mine: Condition = ['external_ids', 'includes', new Map([['owner', 'me']])];
  const onSwitch = (name: string): Condition => ['external_ids', 'includes', new Map([['switch', name]])];
  const b = await connect({ where: { Logical_Switch_Port: [mine] } });
  const changes: RowChange[] = [];
  b.on('change', (ch) => changes.push(...ch.filter((c) => c.table === 'Logical_Switch_Port')));
  await a.transaction((tx) => {
    const port = (name: string, ids: [string, string][]) => tx.insert('Logical_Switch_Port', { name, external_ids: new Map(ids) });
    tx.insert('Logical_Switch', { name: 'ls-cond-a', ports: [port('pc-own', [['owner', 'me'], ['switch', 'ls-cond-a']]), port('pc-a', [['switch', 'ls-cond-a']])] });
    tx.insert('Logical_Switch', { name: 'ls-cond-b', ports: [port('pc-b', [['switch', 'ls-cond-b']])] });
  });
  await b.replica.waitFor(() => b.replica.findOne('Logical_Switch_Port', 'name', 'pc-own'), { timeoutMs: 5000, what: 'pc-own in B' });
  t.notOk(b.replica.findOne('Logical_Switch_Port', 'name', 'pc-a'), 'before: only the first clause');

  b.setConditions('Logical_Switch_Port', [mine, onSwitch('ls-cond-a')]);
  // The transaction waits for the new conditions: its closure sees the switch's other port.
  const { value: seen } = await b.transaction((_tx, replica) => Boolean(replica.findOne('Logical_Switch_Port', 'name', 'pc-a')));
  t.equal(seen, true, 'a transaction built right after setConditions sees the rows they add');
  t.notOk(b.replica.findOne('Logical_Switch_Port', 'name', 'pc-b'), 'a port of another switch stays out');
  t.ok(changes.some((c) => c.new?.name === 'pc-a' && !c.old), 'the row that came is reported as an insert');

  // Updates keep flowing on the changed monitor.
  await a.transaction((tx) => tx.update('Logical_Switch_Port', [['name', '==', 'pc-a']], { addresses: ['router'] }));
  await b.replica.waitFor(() => ((b.replica.findOne('Logical_Switch_Port', 'name', 'pc-a')?.addresses as string[] | undefined)?.[0] === 'router' ? true : undefined), {
    timeoutMs: 5000,
    what: 'the update of pc-a in B',
  });

  b.setConditions('Logical_Switch_Port', [mine]);
  await b.conditionsSettled(5000);
  t.notOk(b.replica.findOne('Logical_Switch_Port', 'name', 'pc-a'), 'a clause taken away takes its rows with it');
  t.ok(b.replica.findOne('Logical_Switch_Port', 'name', 'pc-own'), 'rows of the other clause stay');
  t.ok(changes.some((c) => c.old?.name === 'pc-a' && !c.new), 'the row that left is reported as a delete');
});

t.test('setConditions while disconnected: the next connection monitors with them', async (t) => {
  const a = await connect();
  const onSwitch = (name: string): Condition => ['external_ids', 'includes', new Map([['switch', name]])];
  const b = await connect({ remote: server.tcpRemote!, where: { Logical_Switch_Port: [onSwitch('ls-off-1')] } });
  await a.transaction((tx) => {
    tx.insert('Logical_Switch', { name: 'ls-off', ports: [tx.insert('Logical_Switch_Port', { name: 'po-2', external_ids: new Map([['switch', 'ls-off-2']]) })] });
  });
  const disconnected = new Promise((resolve) => b.once('disconnected', resolve));
  await server.kill('SIGKILL');
  await disconnected;
  b.setConditions('Logical_Switch_Port', [onSwitch('ls-off-2')]);
  const settled = b.conditionsSettled(20_000);
  await server.start();
  await settled;
  t.ok(b.replica.findOne('Logical_Switch_Port', 'name', 'po-2'), 'the row the new clause matches is there');
  await a.whenReady(10_000);
});

function lsUuidOf(c: OvsdbClient, name: string): string {
  const row = c.replica.findOne('Logical_Switch', 'name', name);
  if (!row) throw new Error(`no switch ${name}`);
  return row._uuid;
}

t.test('typed errors name the failing operation or the commit', async (t) => {
  const c = await connect();
  await addSwitch(c, 'ls-err', 'p-err');
  // Duplicate index value: every operation succeeds, the commit fails.
  const dup = await c
    .transaction((tx) => {
      const p = tx.insert('Logical_Switch_Port', { name: 'p-err' });
      tx.mutate('Logical_Switch', [['name', '==', 'ls-err']], [['ports', 'insert', [p]]]);
    })
    .catch((e: unknown) => e);
  t.type(dup, TransactionError);
  t.equal((dup as TransactionError).error, 'constraint violation');
  t.equal((dup as TransactionError).index, 2, 'commit error comes after the two operations');
  t.match((dup as TransactionError).message, /commit failed: constraint violation/);

  // A failing operation is named with its index and table.
  const bad = await c
    .transaction((tx) => {
      tx.comment('first');
      tx.update('Logical_Switch_Port', [['name', '==', 'p-err']], { tag_request: 5000 });
    })
    .catch((e: unknown) => e);
  t.type(bad, TransactionError);
  t.equal((bad as TransactionError).index, 1);
  t.equal((bad as TransactionError).error, 'constraint violation');
  t.match((bad as TransactionError).message, /operation 1 \(update Logical_Switch_Port\)/);
  t.same((bad as TransactionError).operation, c.newTransaction().update('Logical_Switch_Port', [['name', '==', 'p-err']], { tag_request: 5000 }).operations[0]);
  t.notOk(c.replica.findOne('Logical_Switch_Port', 'name', 'p-err')?.tag_request, 'nothing changed');
});

t.test('optimistic concurrency: verify fails on a stale read and transaction() retries', async (t) => {
  const a = await connect();
  const b = await connect();
  await addSwitch(a, 'ls-occ', 'p-occ');
  await b.replica.waitFor(() => b.replica.findOne('Logical_Switch', 'name', 'ls-occ'), { timeoutMs: 5000 });

  // One attempt with a stale row: conflict.
  const stale = a.replica.findOne('Logical_Switch', 'name', 'ls-occ')!;
  await b.transaction((tx) => tx.update('Logical_Switch', [['name', '==', 'ls-occ']], { other_config: new Map([['k', 'b']]) }));
  await a.replica.waitFor(() => (a.replica.findOne('Logical_Switch', 'name', 'ls-occ')!.other_config as Map<string, string>).get('k'), { timeoutMs: 5000 });
  const tx = a.newTransaction();
  tx.verify('Logical_Switch', stale, ['other_config']);
  tx.update('Logical_Switch', [['_uuid', '==', stale._uuid]], { other_config: new Map([['k', 'a']]) });
  const conflict = await a.transact(tx).catch((e: unknown) => e);
  t.type(conflict, TransactionError);
  t.ok((conflict as TransactionError).isConflict);

  // Through transaction(): the first run sees a row B changes before commit, the retry succeeds.
  let runs = 0;
  await a.transaction((tx, replica) => {
    runs++;
    const row = replica.findOne('Logical_Switch', 'name', 'ls-occ')!;
    tx.verify('Logical_Switch', row, ['other_config']);
    const next = new Map(row.other_config as Map<string, string>);
    next.set('counter', String(Number(next.get('counter') ?? '0') + 1));
    tx.update('Logical_Switch', [['_uuid', '==', row._uuid]], { other_config: next });
    if (runs === 1) {
      // Simulate a concurrent writer between read and commit.
      void run('ovsdb-client', [
        'transact',
        server.unixRemote,
        JSON.stringify(['OVN_Northbound', { op: 'update', table: 'Logical_Switch', where: [['name', '==', 'ls-occ']], row: { other_config: ['map', [['counter', '10']]] } }]),
      ]);
      // Block the event loop briefly so the concurrent write lands first.
      const until = Date.now() + 300;
      while (Date.now() < until) { /* spin */ }
    }
  });
  t.equal(runs, 2, 'closure re-ran once after the conflict');
  const final = a.replica.findOne('Logical_Switch', 'name', 'ls-occ')!.other_config as Map<string, string>;
  t.equal(final.get('counter'), '11', 'increment applied on top of the concurrent write');
});

t.test('create-if-absent under concurrency: exactly one row', async (t) => {
  const a = await connect();
  const b = await connect();
  const create = (c: OvsdbClient) =>
    c.transaction((tx, replica) => {
      if (replica.findOne('Logical_Switch', 'name', 'ls-once')) return 'exists';
      tx.guardAbsent('Logical_Switch', 'name', 'ls-once');
      tx.insert('Logical_Switch', { name: 'ls-once' });
      return 'created';
    });
  const outcomes = await Promise.all([a, b, a, b, a, b, a, b].map((c) => create(c)));
  t.equal(outcomes.filter((o) => o.value === 'created' && o.result).length, 1, 'one creator committed');
  await b.replica.waitFor(() => b.replica.findOne('Logical_Switch', 'name', 'ls-once'), { timeoutMs: 5000 });
  t.equal(b.replica.findBy('Logical_Switch', 'name', 'ls-once').length, 1);
  const out = await run('ovsdb-client', ['dump', '--format=csv', server.unixRemote, 'OVN_Northbound', 'Logical_Switch', 'name']);
  t.equal(out.stdout.split('\n').filter((l: string) => l.includes('ls-once')).length, 1, 'server has one row');
});

t.test('a client-chosen row uuid makes a retried insert detectable', async (t) => {
  const c = await connect();
  const uuid = newRowUuid();
  const insert = () =>
    c.transaction(
      (tx) => {
        tx.insert('Logical_Switch', { name: 'ls-chosen-uuid' }, { uuid });
      },
      { retries: 0 },
    );
  const { result } = await insert();
  t.equal(result!.results.length, 1);
  t.ok(c.replica.get('Logical_Switch', uuid), 'row has the uuid we chose');
  const again = await insert().catch((e: unknown) => e);
  t.type(again, TransactionError);
  t.equal((again as TransactionError).error, 'duplicate uuid', 'the retry is refused, not applied twice');
  t.equal(c.replica.findBy('Logical_Switch', 'name', 'ls-chosen-uuid').length, 1);
});

t.test('assert fails unless this connection holds the lock', async (t) => {
  const a = await connect();
  const b = await connect();
  t.same(await a.call('lock', ['driver_leader']), { locked: true });
  t.same(await b.call('lock', ['driver_leader']), { locked: false });
  const write = (c: OvsdbClient, name: string) =>
    c.transaction((tx) => {
      tx.assertLock('driver_leader');
      tx.insert('Logical_Switch', { name });
    });
  await write(a, 'ls-locked-a');
  const err = await write(b, 'ls-locked-b').catch((e: unknown) => e);
  t.type(err, TransactionError);
  t.equal((err as TransactionError).error, 'not owner');
  t.equal((err as TransactionError).index, 0);
  t.notOk(a.replica.findOne('Logical_Switch', 'name', 'ls-locked-b'), 'nothing written without the lock');
  await a.call('unlock', ['driver_leader']);
});

t.test('a parked wait times out on the client and is canceled on the server', async (t) => {
  const c = await connect();
  const tx = c.newTransaction();
  tx.wait('Logical_Switch', [['name', '==', 'never-there']], ['name'], '==', [{ name: 'never-there' }], 60_000);
  const err = await c.transact(tx, { timeoutMs: 300 }).catch((e: unknown) => e);
  t.type(err, RequestTimeoutError);
  // The connection is still usable afterwards.
  t.same(await c.echo(['after']), ['after']);
});

t.test('monitor, monitor_cond and monitor_cancel as raw calls', async (t) => {
  const c = await connect();
  const initial = (await c.call('monitor', ['OVN_Northbound', 'extra', { NB_Global: {} }])) as Record<string, unknown>;
  t.type(initial, 'object');
  t.same(await c.call('monitor_cancel', ['extra']), {});
  const again = await c.call('monitor_cancel', ['extra']).catch((e: unknown) => e);
  t.type(again, RpcError);
  t.equal((again as RpcError).error, 'unknown monitor');
  const cond = await c.call('monitor_cond', ['OVN_Northbound', 'extra2', { Logical_Switch: [{ where: [['name', '==', 'ls-visible']], columns: ['name'] }] }]);
  t.match(JSON.stringify(cond), /ls-visible/);
  t.same(await c.call('monitor_cancel', ['extra2']), {});
});

t.test('server killed and restarted under an open client', async (t) => {
  const c = await connect({ remote: server.tcpRemote! });
  await addSwitch(c, 'ls-survivor', 'p-survivor');
  await addSwitch(c, 'ls-doomed', 'p-doomed');
  const changes: RowChange[] = [];
  c.on('change', (ch) => changes.push(...ch));

  // A transaction parked on the server when it dies: the caller learns the outcome is unknown.
  const tx = c.newTransaction();
  tx.wait('Logical_Switch', [['name', '==', 'never']], ['name'], '==', [{ name: 'never' }], 60_000);
  const inflight = c.transact(tx, { timeoutMs: 30_000 }).catch((e: unknown) => e);
  await sleep(100);
  const disconnected = new Promise((resolve) => c.once('disconnected', resolve));
  await server.kill('SIGKILL');
  const err = await inflight;
  t.type(err, ConnectionClosedError);
  t.equal((err as ConnectionClosedError).outcomeUnknown, true);
  await disconnected;
  t.equal(c.isReady, false);

  // While it is down, the database changes behind the client's back.
  await run('ovsdb-tool', [
    'transact',
    server.dbPath,
    JSON.stringify(['OVN_Northbound', { op: 'delete', table: 'Logical_Switch', where: [['name', '==', 'ls-doomed']] }]),
  ]);
  const ready = new Promise((resolve) => c.once('ready', resolve));
  await server.start();
  await ready;
  t.notOk(c.replica.findOne('Logical_Switch', 'name', 'ls-doomed'), 'resync dropped the deleted switch');
  t.notOk(c.replica.findOne('Logical_Switch_Port', 'name', 'p-doomed'));
  t.ok(c.replica.findOne('Logical_Switch', 'name', 'ls-survivor'), 'kept the rest');
  t.ok(changes.some((ch) => ch.table === 'Logical_Switch' && ch.old?.name === 'ls-doomed' && !ch.new), 'delete reported as a change');

  // And it carries on writing.
  await addSwitch(c, 'ls-after', 'p-after');
  t.ok(c.replica.findOne('Logical_Switch_Port', 'name', 'p-after'));
});

t.test('a hung server is detected by the echo probe on TCP', async (t) => {
  const c = await connect({ remote: server.tcpRemote!, probeIntervalMs: 200 });
  const disconnected = new Promise((resolve) => c.once('disconnected', resolve));
  process.kill(server.pid, 'SIGSTOP');
  try {
    const started = Date.now();
    await disconnected;
    t.ok(Date.now() - started < 5000, 'noticed within a few probe intervals');
  } finally {
    process.kill(server.pid, 'SIGCONT');
  }
  await c.whenReady(10_000);
  t.same(await c.echo(['back']), ['back']);
});
