/**
 * The client against a real three-member RAFT cluster of the NB database:
 * it connects to the leader, follows leadership when it moves, resumes its
 * monitor with monitor_cond_since, and keeps writing.
 */
import t from 'tap';
import { startNbCluster, type OvsdbCluster } from '../harness/cluster.js';
import { OvsdbClient, type Condition } from '../../src/ovsdb/index.js';

let cluster: OvsdbCluster;
let client: OvsdbClient | undefined;

t.before(async () => {
  cluster = await startNbCluster(3);
});
t.teardown(async () => {
  await client?.close();
  await cluster.stop();
});

async function addSwitch(c: OvsdbClient, name: string) {
  await c.transaction((tx, replica) => {
    if (replica.findOne('Logical_Switch', 'name', name)) return;
    tx.guardAbsent('Logical_Switch', 'name', name);
    tx.insert('Logical_Switch', { name });
  });
}

async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function leaderRemote(index: number): string {
  return cluster.members[index]!.tcpRemote;
}

t.test('connects to the leader, follows it when leadership moves or the leader dies', async (t) => {
  const readies: { remote: string; resumed: boolean }[] = [];
  client = new OvsdbClient({
    remote: cluster.remotes,
    database: 'OVN_Northbound',
    tables: ['Logical_Switch'],
    indexes: { Logical_Switch: { columns: ['name'] } },
    requestTimeoutMs: 15_000,
    backoff: { initialMs: 100, maxMs: 1000 },
  });
  client.on('ready', (info) => readies.push(info));
  client.start();
  await client.whenReady(20_000);
  const leader = await cluster.leaderIndex();
  t.equal(client.currentRemote, leaderRemote(leader), 'on the leader');
  await addSwitch(client, 'before');

  const newLeader = await cluster.transferLeadership();
  t.not(newLeader, leader, 'leadership moved');
  await until(() => client!.isReady && client!.currentRemote === leaderRemote(newLeader), 20_000, 'client on the new leader');
  t.equal(client.currentRemote, leaderRemote(newLeader), 'moved to the new leader');
  await addSwitch(client, 'after-transfer');
  t.ok(client.replica.findOne('Logical_Switch', 'name', 'after-transfer'));
  t.ok(readies.slice(1).some((r) => r.resumed), 'monitor resumed with monitor_cond_since');

  // Kill the leader outright: the client must find the next one and carry on.
  const killed = await cluster.leaderIndex();
  await cluster.kill(killed);
  const third = await cluster.waitForLeader({ exclude: killed, timeoutMs: 20_000 });
  await addSwitch(client, 'after-kill');
  t.equal(client.currentRemote, leaderRemote(third), 'on the leader elected after the kill');
  t.ok(client.replica.findOne('Logical_Switch', 'name', 'before'), 'replica kept its data');
  t.ok(client.replica.findOne('Logical_Switch', 'name', 'after-kill'));
  t.equal(client.replica.findBy('Logical_Switch', 'name', 'after-kill').length, 1);
  await cluster.start(killed);
});

t.test('leaderOnly=false accepts a follower', async (t) => {
  const leader = await cluster.waitForLeader({ timeoutMs: 20_000 });
  const follower = cluster.members.find((m) => m.index !== leader && m.running)!;
  const c = await OvsdbClient.connect(
    {
      remote: follower.unixRemote,
      database: 'OVN_Northbound',
      tables: ['Logical_Switch'],
      indexes: { Logical_Switch: { columns: ['name'] } },
      leaderOnly: false,
    },
    20_000,
  );
  t.teardown(() => c.close());
  t.equal(c.currentRemote, follower.unixRemote);
  await addSwitch(c, 'via-follower');
  t.ok(c.replica.findOne('Logical_Switch', 'name', 'via-follower'), 'write forwarded to the leader, visible locally');

  const strict = new OvsdbClient({ remote: follower.unixRemote, database: 'OVN_Northbound', tables: ['Logical_Switch'] });
  strict.start();
  const err = await strict.whenReady(1500).catch((e: unknown) => e);
  await strict.close();
  t.match(String(err), /not the cluster leader/, 'leader-only client refuses a follower and says why');
});

t.test('conditions changed on a resumable monitor: a resume keeps them, a change made while away takes a full snapshot', async (t) => {
  const byName = (...names: string[]) => names.map((name): Condition => ['name', '==', name]);
  const readies: { resumed: boolean }[] = [];
  const c = new OvsdbClient({
    remote: cluster.remotes,
    database: 'OVN_Northbound',
    tables: ['Logical_Switch'],
    where: { Logical_Switch: byName('cond-1') },
    indexes: { Logical_Switch: { columns: ['name'] } },
    requestTimeoutMs: 15_000,
    backoff: { initialMs: 100, maxMs: 1000 },
  });
  c.on('ready', (info) => readies.push(info));
  c.start();
  t.teardown(() => c.close());
  await c.whenReady(20_000);
  for (const name of ['cond-1', 'cond-2', 'cond-3']) await addSwitch(c, name);
  t.notOk(c.replica.findOne('Logical_Switch', 'name', 'cond-2'), 'out of the conditions');

  c.setConditions('Logical_Switch', byName('cond-1', 'cond-2'));
  await c.conditionsSettled(10_000);
  t.ok(c.replica.findOne('Logical_Switch', 'name', 'cond-2'), 'in once the conditions say so');

  // Leadership moves: the monitor resumes from its last transaction, with the conditions it has.
  const before = readies.length;
  await cluster.transferLeadership();
  await until(() => readies.length > before && c.isReady, 20_000, 'the client on the new leader');
  t.equal(readies.at(-1)?.resumed, true, 'resumed');
  t.same([...c.replica.rows('Logical_Switch')].map((r) => r.name).sort(), ['cond-1', 'cond-2'], 'with the rows of its conditions');

  // Conditions changed while no connection is up: a resume would miss cond-3 (unchanged since), so the monitor starts over.
  const away = new Promise((resolve) => c.once('disconnected', resolve));
  const leader = await cluster.leaderIndex();
  await cluster.kill(leader);
  await away;
  c.setConditions('Logical_Switch', byName('cond-1', 'cond-3'));
  const settled = c.conditionsSettled(30_000);
  await cluster.waitForLeader({ exclude: leader, timeoutMs: 20_000 });
  await settled;
  t.equal(readies.at(-1)?.resumed, false, 'not resumed: a full snapshot');
  t.same([...c.replica.rows('Logical_Switch')].map((r) => r.name).sort(), ['cond-1', 'cond-3'], 'with the rows of the new conditions');
  await cluster.start(leader);
});
