/**
 * The client against a real three-member RAFT cluster of the NB database:
 * it connects to the leader, follows leadership when it moves, resumes its
 * monitor with monitor_cond_since, and keeps writing.
 */
import t from 'tap';
import { startNbCluster, type OvsdbCluster } from '../harness/cluster.js';
import { OvsdbClient } from '../../src/ovsdb/index.js';

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
