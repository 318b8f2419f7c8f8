/**
 * transaction()'s runner alone, against a fake session: re-runs after a lost
 * connection, its budget, the error that says what to check, and failing
 * fast once one transaction gave up. No server.
 */
import t from 'tap';
import { ConnectionClosedError, OvsdbError, RpcError } from '../../src/ovsdb/errors.js';
import { Replica } from '../../src/ovsdb/replica.js';
import { parseSchema } from '../../src/ovsdb/schema.js';
import { Transaction, TransactionResult } from '../../src/ovsdb/transaction.js';
import { TransactionRunner, type RunnerSession } from '../../src/ovsdb/transaction-runner.js';
import { silentLogger } from '../../src/ovsdb/logger.js';

const SCHEMA = parseSchema({
  name: 'Test',
  version: '1.0.0',
  tables: { Item: { columns: { name: { type: 'string' } } } },
});

/** A session that is ready or not as the test says, and answers transact with `answer`. */
class FakeSession implements RunnerSession {
  ready = true;
  closed = false;
  error: Error | undefined;
  hurries = 0;
  sent: Transaction[] = [];
  answer: (n: number) => Promise<TransactionResult> = async () => new TransactionResult([{}], new Map());
  private readonly replicaValue = new Replica(SCHEMA, ['Item']);

  isReady(): boolean {
    return this.ready;
  }
  isClosed(): boolean {
    return this.closed;
  }
  lastError(): Error | undefined {
    return this.error;
  }
  whenReady(timeoutMs: number): Promise<void> {
    if (this.ready) return Promise.resolve();
    return new Promise((_resolve, reject) =>
      setTimeout(() => reject(new ConnectionClosedError(`no usable OVSDB server within ${timeoutMs} ms`, false)), timeoutMs),
    );
  }
  hurry(): void {
    this.hurries++;
  }
  replica(): Replica {
    return this.replicaValue;
  }
  conditionsSettled(): Promise<void> {
    return Promise.resolve();
  }
  newTransaction(): Transaction {
    return new Transaction(SCHEMA);
  }
  transact(tx: Transaction): Promise<TransactionResult> {
    this.sent.push(tx);
    return this.answer(this.sent.length);
  }
}

function runner(session: FakeSession, remote = 'tcp:127.0.0.1:6641', remoteCount = 1): TransactionRunner {
  return new TransactionRunner(session, { database: 'Test', remote, remoteCount, timeoutMs: 10_000, log: silentLogger });
}

const insert = (tx: Transaction) => tx.insert('Item', { name: 'a' });

t.test('an empty transaction is not sent; a comment goes with the operations', async (t) => {
  const session = new FakeSession();
  const run = runner(session);
  t.same(await run.run(() => 'nothing'), { value: 'nothing', result: undefined });
  t.equal(session.sent.length, 0);
  const { result } = await run.run(insert, { comment: 'why' });
  t.ok(result instanceof TransactionResult);
  t.same(
    session.sent[0]!.operations.map((op) => op.op),
    ['insert', 'comment'],
  );
});

t.test('a lost connection re-runs the closure; other errors do not', async (t) => {
  const session = new FakeSession();
  session.answer = async (n) => {
    if (n === 1) throw new ConnectionClosedError('connection lost', true);
    if (n === 2) throw new RpcError('transact', 'canceled', undefined);
    return new TransactionResult([{}], new Map());
  };
  let builds = 0;
  await runner(session).run((tx) => {
    builds++;
    insert(tx);
  });
  t.equal(builds, 3, 'built again for each attempt');

  session.answer = async () => {
    throw new OvsdbError('not retried');
  };
  const err = await runner(session).run(insert).catch((e: unknown) => e);
  t.equal((err as Error).message, 'not retried');
  t.equal(session.sent.length, 4);
});

t.test('retries spent on lost connections: the error says the outcome is unknown and what to check', async (t) => {
  const session = new FakeSession();
  session.answer = async () => {
    throw new ConnectionClosedError('connection lost', true);
  };
  const err = await runner(session, 'tcp:10.0.0.1:6641,tcp:10.0.0.2:6641', 2)
    .run(insert, { retries: 2 })
    .catch((e: unknown) => e);
  t.equal(session.sent.length, 3);
  t.ok(err instanceof ConnectionClosedError);
  t.equal((err as ConnectionClosedError).outcomeUnknown, true);
  t.match((err as Error).message, /^no answer from Test at tcp:10\.0\.0\.1:6641,tcp:10\.0\.0\.2:6641 for \d+ ms \(connection lost\): /);
  t.match((err as Error).message, /ovsdb-client list-dbs with each of tcp:10\.0\.0\.1:6641,tcp:10\.0\.0\.2:6641/);
});

t.test('once one gave up, the others fail within 2 s and hurry the reconnect, until the database answers', async (t) => {
  const session = new FakeSession();
  session.ready = false;
  session.error = new Error('connection refused');
  const run = runner(session);

  let started = Date.now();
  const first = await run.run(insert, { timeoutMs: 300 }).catch((e: unknown) => e);
  t.ok(Date.now() - started >= 290, 'the first waits its whole budget');
  t.match((first as Error).message, /^no answer from Test at tcp:127\.0\.0\.1:6641 for \d+ ms \(connection refused\): .*\(ovsdb-client list-dbs tcp:127\.0\.0\.1:6641\)/);
  t.equal((first as ConnectionClosedError).outcomeUnknown, false);
  t.equal(session.hurries, 0);

  started = Date.now();
  const second = await run.run(insert).catch((e: unknown) => e);
  const took = Date.now() - started;
  t.ok(took >= 1990 && took < 3000, `the next fails after ${took} ms, not its 10 s budget`);
  t.ok(second instanceof ConnectionClosedError);
  t.equal(session.hurries, 1, 'and hurries the next connection attempt');

  run.answered();
  started = Date.now();
  await run.run(insert, { timeoutMs: 300 }).catch((e: unknown) => e);
  const third = Date.now() - started;
  t.ok(third >= 290 && third < 1000, `after an answer, the budget is its own again (${third} ms)`);
  t.equal(session.hurries, 1);
});

t.test('after close, the wait fails with its own error', async (t) => {
  const session = new FakeSession();
  session.ready = false;
  session.closed = true;
  const err = await runner(session).run(insert, { timeoutMs: 50 }).catch((e: unknown) => e);
  t.match((err as Error).message, /^no usable OVSDB server within 50 ms/);
});
