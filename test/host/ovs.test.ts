/**
 * The ovs-vsctl wrapper against a real single-chassis stack (ovsdb-server,
 * ovs-vswitchd with a netdev br-int, ovn-controller): veths plugged with
 * their OVN external_ids, idempotent re-attach, hostile values stored
 * literally, listing, detach, and what ovs-vsctl's own timeout looks like.
 */
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { createRunner, type Runner } from '../../src/host/exec.js';
import { Links } from '../../src/host/links.js';
import { InvalidArgumentError } from '../../src/host/names.js';
import { BridgeNotFoundError, decodeOvsCell, Ovs, OvsTimeoutError, ovsCellAsOptional, ovsCellAsSet, ovsCellAsStringMap, type PortAttachment } from '../../src/host/ovs.js';
import { startOvnStack, type OvnStack } from '../harness/ovn-stack.js';
import { startOvsdbServer } from '../harness/ovsdb-server.js';
import { run, stopAll } from '../harness/process.js';

t.teardown(stopAll);

const runner = createRunner();
const links = new Links(runner);

const randomName = (prefix: string): string => `${prefix}${randomBytes(5).toString('hex')}`;
const randomMac = (): string => `02:${[...randomBytes(5)].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;

/** A host-side veth end for one test, deleted by its exact name in teardown. */
async function makeVeth(t: { teardown(fn: () => Promise<void>): void }): Promise<{ host: string; peer: string }> {
  const host = randomName('to');
  const peer = randomName('to');
  t.teardown(async () => {
    await run('ip', ['link', 'del', 'dev', host]).catch(() => undefined);
    await run('ip', ['link', 'del', 'dev', peer]).catch(() => undefined);
  });
  await links.createVeth(host, peer, { mtu: 1442, peerMac: randomMac() });
  return { host, peer };
}

/**
 * Reads external_ids with ovs-vsctl itself and plain JSON.parse, not with the
 * decoder under test.
 */
async function externalIdsOf(stack: OvnStack, iface: string): Promise<Record<string, string>> {
  const out = await stack.vsctl('--format=json', '--data=json', '--columns=external_ids', 'list', 'Interface', iface);
  const table = JSON.parse(out) as { data: [['map', [string, string][]]][] };
  const row = table.data[0];
  if (!row) throw new Error(`no Interface ${iface}`);
  return Object.fromEntries(row[0][1]);
}

async function portsOn(stack: OvnStack, bridge: string): Promise<string[]> {
  return (await stack.vsctl('list-ports', bridge)).split('\n').filter((l) => l !== '');
}

t.test('decodeOvsCell and friends', async (t) => {
  const uuid = '2cd16e11-3923-40bf-9bc3-7143897d44a6';
  t.same(decodeOvsCell(['map', [['a', '1'], ['b', 'x"y']]]), new Map([['a', '1'], ['b', 'x"y']]));
  t.same(decodeOvsCell(['set', [1, 2]]), [1, 2]);
  t.same(decodeOvsCell(['set', []]), []);
  t.equal(decodeOvsCell(['uuid', uuid]), uuid);
  t.same(decodeOvsCell(['set', [['uuid', uuid], ['uuid', 'x']]]), [uuid, 'x']);
  t.same(decodeOvsCell(['map', [[1, ['uuid', uuid]]]]), new Map([[1, uuid]]));
  t.equal(decodeOvsCell('netdev'), 'netdev');
  t.equal(decodeOvsCell(''), '');
  t.equal(decodeOvsCell(7), 7);
  t.equal(decodeOvsCell(false), false);
  // ovs-vsctl prints a one-element set as the bare element.
  t.same(ovsCellAsSet(['uuid', uuid]), [uuid]);
  t.same(ovsCellAsSet(['set', [['uuid', uuid]]]), [uuid]);
  t.equal(ovsCellAsOptional(['set', []]), null);
  t.equal(ovsCellAsOptional(3), 3);
  t.same(ovsCellAsStringMap(['map', []]), new Map());
  for (const bad of [null, {}, ['map', [['a']]], ['set', [{}]], ['uuid', 1], [1, 2, 3]]) {
    t.throws(() => decodeOvsCell(bad), Error, JSON.stringify(bad));
  }
  t.throws(() => ovsCellAsStringMap(['map', [['a', 1]]]), /string map/);
  t.throws(() => ovsCellAsOptional(['set', [1, 2]]), /at most one/);
});

t.test('inputs are validated before ovs-vsctl runs', async (t) => {
  const calls: string[] = [];
  const counting: Runner = {
    run(command, args, options) {
      calls.push(command);
      return runner.run(command, args, options);
    },
  };
  const ovs = new Ovs({ runner: counting, db: 'unix:/nonexistent/db.sock' });
  const good: PortAttachment = { bridge: 'br-int', port: 'ovn0123456789ab', ifaceId: 'lsp', attachedMac: '02:00:00:00:00:01', externalIds: {} };
  const bad: [string, Partial<PortAttachment>][] = [
    ['bridge with a space', { bridge: 'br int' }],
    ['bridge that reads as an option', { bridge: '--help' }],
    ['port too long', { port: 'x'.repeat(16) }],
    ['empty iface-id', { ifaceId: '' }],
    ['iface-id with NUL', { ifaceId: 'a\0b' }],
    ['iface-id with a lone surrogate', { ifaceId: 'a\ud800' }],
    ['multicast MAC', { attachedMac: '01:00:00:00:00:01' }],
    ['broken MAC', { attachedMac: '02:00:00:00:00' }],
    ['reserved key', { externalIds: { 'iface-id': 'other' } }],
    ['empty key', { externalIds: { '': 'x' } }],
    ['NUL in a value', { externalIds: { k: 'a\0b' } }],
  ];
  for (const [what, patch] of bad) await t.rejects(ovs.attachPort({ ...good, ...patch }), InvalidArgumentError, what);
  await t.rejects(ovs.detachPort('br-int', 'a/b'), InvalidArgumentError);
  await t.rejects(ovs.listPorts(''), InvalidArgumentError);
  await t.rejects(ovs.datapathType('a b'), InvalidArgumentError);
  t.throws(() => new Ovs({ runner: counting, timeoutSec: 0 }), InvalidArgumentError);
  t.throws(() => new Ovs({ runner: counting, timeoutSec: 1.5 }), InvalidArgumentError);
  t.throws(() => new Ovs({ runner: counting, db: '' }), InvalidArgumentError);
  t.same(calls, [], 'nothing ran');
});

t.test('against a running OVN chassis', async (t) => {
  const stack = await startOvnStack();
  t.teardown(() => stack.stop());
  const ovs = new Ovs({ runner, db: stack.ovsRemote, timeoutSec: 10 });

  t.test('attach, re-attach, list, detach', async (t) => {
    const { host } = await makeVeth(t);
    const mac = randomMac();
    const attachment: PortAttachment = {
      bridge: 'br-int',
      port: host,
      ifaceId: 'lsp-web-1',
      attachedMac: mac.toUpperCase(),
      externalIds: { 'ovn-docker:endpoint': 'ep1', 'ovn-docker:network': 'net1', 'ovn-docker:owner': 'ovn-docker-driver' },
    };
    await ovs.attachPort(attachment);

    t.equal((await stack.vsctl('get', 'Interface', host, 'external_ids:iface-id')).trim(), 'lsp-web-1');
    t.equal((await stack.vsctl('get', 'Interface', host, 'external_ids:attached-mac')).trim(), `"${mac}"`, 'MAC stored in lower case');
    t.same(await externalIdsOf(stack, host), {
      'iface-id': 'lsp-web-1',
      'attached-mac': mac,
      'iface-status': 'active',
      'ovn-docker:endpoint': 'ep1',
      'ovn-docker:network': 'net1',
      'ovn-docker:owner': 'ovn-docker-driver',
    });
    t.ok((await portsOn(stack, 'br-int')).includes(host), 'port is on br-int');

    const listed = (await ovs.listPorts('br-int')).find((p) => p.port === host);
    t.ok(listed, 'listPorts shows it');
    t.equal(listed?.externalIds.get('iface-id'), 'lsp-web-1');
    t.equal(listed?.externalIds.get('ovn-docker:endpoint'), 'ep1');
    t.ok(typeof listed?.ofport === 'number' && listed.ofport > 0, `ofport assigned by the time attach returns (${listed?.ofport})`);
    const ofport = listed?.ofport;

    // Someone else's key (ovn-controller writes ovn-installed here) must survive.
    await stack.vsctl('set', 'Interface', host, 'external_ids:foreign=kept');
    await ovs.attachPort({ ...attachment, externalIds: { ...attachment.externalIds, 'ovn-docker:network': 'net2' } });
    const after = await externalIdsOf(stack, host);
    t.equal(after['ovn-docker:network'], 'net2', 're-attach updates our keys');
    t.equal(after.foreign, 'kept', 'and leaves others alone');
    t.equal((await portsOn(stack, 'br-int')).filter((p) => p === host).length, 1, 'still one port');
    t.equal((await ovs.listPorts('br-int')).find((p) => p.port === host)?.ofport, ofport, 'same ofport');

    t.equal(await ovs.detachPort('br-int', host), true, 'first detach deletes');
    t.equal(await ovs.detachPort('br-int', host), false, 'second detach finds nothing');
    t.notOk((await portsOn(stack, 'br-int')).includes(host));
    t.notOk((await ovs.listPorts('br-int')).some((p) => p.port === host));
    t.ok(await links.exists(host), 'detach leaves the veth itself alone');
  });

  t.test('hostile external_ids values and keys are stored literally', async (t) => {
    const { host } = await makeVeth(t);
    const hostile: Record<string, string> = {
      'ovn-docker:endpoint': 'a" external_ids:evil=1 x',
      'ovn-docker:braces': '{evil=1}',
      'ovn-docker:commas': 'a,evil=1,b',
      'ovn-docker:quotes': '"""',
      'ovn-docker:backslash': 'x\\" evil=1 \\',
      'ovn-docker:newline': 'one\ntwo\t\u0001',
      'ovn-docker:unicode': 'naïve ☃ 😀',
      'ovn-docker:empty': '',
      'ovn-docker:brackets': '[1,2] -- set Interface x external_ids:evil=1',
      'k" evil=1 x': 'hostile key',
      'key{a=b},c:d': 'v',
    };
    await ovs.attachPort({ bridge: 'br-int', port: host, ifaceId: 'lsp " evil=1', attachedMac: randomMac(), externalIds: hostile });
    const stored = await externalIdsOf(stack, host);
    for (const [k, v] of Object.entries(hostile)) t.equal(stored[k], v, `${JSON.stringify(k)} round-trips`);
    t.equal(stored['iface-id'], 'lsp " evil=1');
    t.same(Object.keys(stored).sort(), [...Object.keys(hostile), 'iface-id', 'attached-mac', 'iface-status'].sort(), 'no other key appeared');
    t.notOk('evil' in stored);
    const listed = (await ovs.listPorts('br-int')).find((p) => p.port === host);
    t.same(listed && Object.fromEntries(listed.externalIds), stored, 'listPorts decodes the same values');
    t.equal(await ovs.detachPort('br-int', host), true);
  });

  t.test('attachPorts: several ports in one ovs-vsctl transaction, all or none', async (t) => {
    const veths = [await makeVeth(t), await makeVeth(t), await makeVeth(t)];
    const calls: string[] = [];
    const counted = new Ovs({ runner: { run: (c, a, o) => (calls.push(c), runner.run(c, a, o)) }, db: stack.ovsRemote, timeoutSec: 10 });
    const attachments: PortAttachment[] = veths.map(({ host }, i) => ({
      bridge: 'br-int',
      port: host,
      ifaceId: `lsp-batch-${i}`,
      attachedMac: randomMac(),
      ...(i === 2 ? { tag: 12 } : {}),
      externalIds: { 'ovn-docker:owner': 'ovn-docker-driver' },
    }));
    t.teardown(async () => {
      for (const { host } of veths) await ovs.detachPort('br-int', host);
    });
    await counted.attachPorts(attachments);
    t.same(calls, ['ovs-vsctl'], 'one process for three ports');
    for (const [i, { host }] of veths.entries()) {
      t.ok((await portsOn(stack, 'br-int')).includes(host), `${host} is on br-int`);
      t.equal((await externalIdsOf(stack, host))['iface-id'], `lsp-batch-${i}`, 'with its own iface-id');
    }
    t.equal((await stack.vsctl('get', 'Port', veths[2]!.host, 'tag')).trim(), '12', 'and its own tag');
    t.equal((await stack.vsctl('get', 'Port', veths[0]!.host, 'tag')).trim(), '[]', 'untagged ports stay untagged');

    await counted.attachPorts(attachments);
    t.equal((await portsOn(stack, 'br-int')).filter((p) => veths.some((v) => v.host === p)).length, 3, 'again: still three ports');

    const fresh = await makeVeth(t);
    t.teardown(() => ovs.detachPort('br-int', fresh.host).then(() => undefined));
    const bad = { ...attachments[0]!, port: fresh.host, ifaceId: 'lsp-fresh', externalIds: { 'iface-id': 'mine' } };
    calls.length = 0;
    await t.rejects(counted.attachPorts([{ ...bad, externalIds: {} }, bad]), InvalidArgumentError, 'a bad attachment in a batch');
    t.same(calls, [], 'nothing ran');
    t.notOk((await portsOn(stack, 'br-int')).includes(fresh.host), 'and nothing was attached');
  });

  t.test('an interface whose device is missing gets ofport -1', async (t) => {
    const ghost = randomName('tg');
    await ovs.attachPort({ bridge: 'br-int', port: ghost, ifaceId: 'ghost', attachedMac: randomMac(), externalIds: {} });
    t.teardown(() => ovs.detachPort('br-int', ghost).then(() => undefined));
    t.equal((await ovs.listPorts('br-int')).find((p) => p.port === ghost)?.ofport, -1);
  });

  t.test('bridges and Open_vSwitch', async (t) => {
    t.equal(await ovs.datapathType('br-int'), 'netdev');
    await t.rejects(ovs.datapathType('br-nope'), BridgeNotFoundError);
    await t.rejects(ovs.listPorts('br-nope'), BridgeNotFoundError);
    await t.rejects(ovs.attachPort({ bridge: 'br-nope', port: randomName('tn'), ifaceId: 'x', attachedMac: randomMac(), externalIds: {} }), BridgeNotFoundError);
    t.equal(await ovs.detachPort('br-nope', randomName('tn')), false, 'no port, no bridge: nothing to do');
    const ghost = randomName('tg');
    await ovs.attachPort({ bridge: 'br-int', port: ghost, ifaceId: 'ghost', attachedMac: randomMac(), externalIds: {} });
    t.teardown(() => ovs.detachPort('br-int', ghost).then(() => undefined));
    await t.rejects(ovs.detachPort('br-nope', ghost), BridgeNotFoundError, 'a port that exists, on a bridge that does not');
    t.ok((await portsOn(stack, 'br-int')).includes(ghost), 'and the port stays');
    const ids = await ovs.openvswitchExternalIds();
    t.equal(ids.get('system-id'), stack.systemId);
    t.equal(ids.get('ovn-bridge-datapath-type'), 'netdev');
    t.ok(ids.get('ovn-remote'), 'ovn-remote is set');
    // br-int's own internal interface is an interface on the bridge too.
    t.ok((await ovs.listPorts('br-int')).some((p) => p.port === 'br-int'));
  });
});

t.test('ovs-vsctl timing out is an OvsTimeoutError', async (t) => {
  // A database with no ovs-vswitchd: the write commits, then nobody confirms it.
  const db = await startOvsdbServer({ schema: 'vswitch' });
  t.teardown(() => db.stop());
  await run('ovs-vsctl', [`--db=${db.unixRemote}`, '--timeout=10', '--no-wait', 'init', '--', 'add-br', 'br-t', '--', 'set', 'Bridge', 'br-t', 'datapath_type=netdev']);
  const ovs = new Ovs({ runner, db: db.unixRemote, timeoutSec: 1 });
  const started = Date.now();
  await t.rejects(
    ovs.attachPort({ bridge: 'br-t', port: 'p1', ifaceId: 'x', attachedMac: '02:00:00:00:00:01', externalIds: {} }),
    OvsTimeoutError,
  );
  t.ok(Date.now() - started < 3000, 'within the ovs-vsctl timeout, not our backstop');
  t.equal((await ovs.listPorts('br-t')).length, 2, 'the write did commit (br-t and p1)');
  t.equal(await ovs.datapathType('br-t'), 'netdev', 'reads need no vswitchd');
  // Refused before the commit, so there is nothing for vswitchd to confirm.
  await run('ovs-vsctl', [`--db=${db.unixRemote}`, '--timeout=10', '--no-wait', 'add-br', 'br-u', '--', 'add-port', 'br-u', 'p2']);
  await t.rejects(ovs.detachPort('br-t', 'p2'), /bridge br-t does not have a port p2/, 'a port on another bridge is not ours to delete');
  t.equal((await ovs.listPorts('br-u')).filter((p) => p.port === 'p2').length, 1, 'and it stays');
});
