/**
 * Veth pairs in the real host namespace: created in one go with MTU and MAC,
 * idempotent on retry, refusing to adopt someone else's link, offload off,
 * deleted exactly once. Every link a test makes has a random name and is
 * removed by that name in teardown.
 */
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import t from 'tap';
import { CommandError, createRunner, type Runner } from '../../src/host/exec.js';
import { LinkConflictError, Links, parseProcNetDev } from '../../src/host/links.js';
import { InvalidArgumentError } from '../../src/host/names.js';
import { run } from '../harness/process.js';

const runner = createRunner();
const links = new Links(runner);

/** 'tl' + 10 hex = 12 chars: unique, and obviously a test leftover if one survives. */
const randomName = (): string => `tl${randomBytes(5).toString('hex')}`;
const randomMac = (): string => `02:${[...randomBytes(5)].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;

/** Deletes by exact name; a name that is already gone is fine. */
function removeInTeardown(t: { teardown(fn: () => Promise<void>): void }, ...names: string[]): void {
  t.teardown(async () => {
    for (const name of names) await run('ip', ['link', 'del', 'dev', name]).catch(() => undefined);
  });
}

interface IpLinkJson {
  ifname: string;
  ifindex: number;
  link?: string;
  mtu: number;
  address: string;
  flags: string[];
  linkinfo?: { info_kind?: string };
}

async function ipShow(name: string): Promise<IpLinkJson | undefined> {
  const r = await run('ip', ['-j', '-d', 'link', 'show', 'dev', name]).catch(() => undefined);
  return r ? (JSON.parse(r.stdout) as IpLinkJson[])[0] : undefined;
}

/** A real runner that also records what it was asked to run. */
function countingRunner(): Runner & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    run(command, args, options) {
      calls.push([command, ...args].join(' '));
      return runner.run(command, args, options);
    },
  };
}

t.test('createVeth makes the pair with MTU and peer MAC, host side up', async (t) => {
  const host = randomName();
  const peer = randomName();
  const mac = randomMac();
  removeInTeardown(t, host, peer);

  await links.createVeth(host, peer, { mtu: 1442, peerMac: mac.toUpperCase() });

  const h = await ipShow(host);
  const p = await ipShow(peer);
  t.ok(h && p, 'both ends exist');
  t.equal(h?.linkinfo?.info_kind, 'veth');
  t.equal(h?.link, peer, 'host side is paired with the peer');
  t.equal(p?.link, host, 'and the peer with the host side');
  t.equal(h?.mtu, 1442);
  t.equal(p?.mtu, 1442);
  t.equal(p?.address, mac, 'peer MAC as requested (normalised to lower case)');
  t.ok(h?.flags.includes('UP'), 'host side is up');
  t.notOk(p?.flags.includes('UP'), 'peer left for Docker to bring up');
  // The host end is an OVS port: the host's own ARP and IPv6 must not answer a container through it.
  t.ok(h?.flags.includes('NOARP'), 'host side does not answer ARP');
  t.equal(await readFile(`/proc/sys/net/ipv6/conf/${host}/disable_ipv6`, 'utf8'), '1\n', 'host side has no IPv6');
  t.notOk(p?.flags.includes('NOARP'), 'the container side keeps ARP');
  t.equal(await readFile(`/proc/sys/net/ipv6/conf/${peer}/disable_ipv6`, 'utf8'), '0\n', 'and IPv6');

  t.ok(await links.exists(host));
  t.ok(await links.exists(peer));
  const listed = await links.list();
  t.same(listed.find((l) => l.name === host), { name: host, kind: 'veth' });
  t.ok(listed.some((l) => l.name === 'lo'), 'lo is listed too');

  // Retry after a crash: same request, same pair, nothing recreated.
  await links.createVeth(host, peer, { mtu: 1442, peerMac: mac });
  t.equal((await ipShow(host))?.ifindex, h?.ifindex, 'idempotent create keeps the same link');

  // A crash between add and up (or a pair made by an older driver): the retry finishes the job.
  await run('ip', ['link', 'set', 'dev', host, 'down', 'arp', 'on']);
  await writeFile(`/proc/sys/net/ipv6/conf/${host}/disable_ipv6`, '0\n');
  await links.createVeth(host, peer, { mtu: 1442, peerMac: mac });
  const retried = await ipShow(host);
  t.ok(retried?.flags.includes('UP'), 'retry brings a downed host side up');
  t.ok(retried?.flags.includes('NOARP'), 'with ARP off');
  t.equal(await readFile(`/proc/sys/net/ipv6/conf/${host}/disable_ipv6`, 'utf8'), '1\n', 'and IPv6 off');
});

t.test('createVeth refuses links that are not the pair asked for', async (t) => {
  const host = randomName();
  const peer = randomName();
  const other = randomName();
  const fresh = randomName();
  const bridge = randomName();
  const mac = randomMac();
  removeInTeardown(t, host, peer, other, fresh, bridge);
  await run('ip', ['link', 'add', 'name', host, 'mtu', '1442', 'type', 'veth', 'peer', 'name', peer, 'mtu', '1442', 'address', mac]);
  await run('ip', ['link', 'add', 'name', bridge, 'type', 'bridge']);

  await t.rejects(links.createVeth(host, other, { mtu: 1442, peerMac: mac }), LinkConflictError, 'a veth with another peer');
  t.equal(await ipShow(other), undefined, 'no half pair left behind');
  await t.rejects(links.createVeth(host, peer, { mtu: 1442, peerMac: randomMac() }), LinkConflictError, 'the pair, but another MAC');
  await t.rejects(links.createVeth(host, peer, { mtu: 1500, peerMac: mac }), LinkConflictError, 'the pair, but another MTU');
  await t.rejects(links.createVeth(bridge, other, { mtu: 1442, peerMac: mac }), /is not a veth \(kind bridge\)/, 'a bridge');
  await t.rejects(links.createVeth(fresh, peer, { mtu: 1442, peerMac: mac }), LinkConflictError, 'the peer name is taken');
  t.equal(await ipShow(fresh), undefined, 'the host side was not created either');
  t.equal((await ipShow(peer))?.link, host, 'the existing pair is untouched');
  t.notOk((await ipShow(host))?.flags.includes('UP'), 'and was not brought up');
});

t.test('createVeths makes several pairs in one ip process, each as createVeth would', async (t) => {
  const pairs = Array.from({ length: 5 }, () => ({ host: randomName(), peer: randomName(), mtu: 1442, peerMac: randomMac() }));
  removeInTeardown(t, ...pairs.flatMap((p) => [p.host, p.peer]));
  const counting = countingRunner();
  await new Links(counting).createVeths(pairs);
  t.same(counting.calls, ['ip -batch -'], 'one process for the five pairs');
  for (const p of pairs) {
    const h = await ipShow(p.host);
    const peer = await ipShow(p.peer);
    t.equal(h?.link, p.peer, `${p.host} is paired with ${p.peer}`);
    t.equal(peer?.address, p.peerMac, 'peer MAC');
    t.equal(peer?.mtu, 1442, 'peer MTU');
    t.ok(h?.flags.includes('UP') && h.flags.includes('NOARP'), 'host side up, without ARP');
    t.equal(await readFile(`/proc/sys/net/ipv6/conf/${p.host}/disable_ipv6`, 'utf8'), '1\n', 'host side without IPv6');
  }
});

t.test('createVeths: a pair a crash left, or a name taken, sends every pair through createVeth', async (t) => {
  const pairs = Array.from({ length: 3 }, () => ({ host: randomName(), peer: randomName(), mtu: 1442, peerMac: randomMac() }));
  const other = randomName();
  removeInTeardown(t, other, ...pairs.flatMap((p) => [p.host, p.peer]));
  // The middle pair exists already, down (a crash between add and up).
  await run('ip', ['link', 'add', 'name', pairs[1]!.host, 'mtu', '1442', 'type', 'veth', 'peer', 'name', pairs[1]!.peer, 'mtu', '1442', 'address', pairs[1]!.peerMac]);
  const before = (await ipShow(pairs[1]!.host))?.ifindex;
  await links.createVeths(pairs);
  for (const p of pairs) t.equal((await ipShow(p.host))?.link, p.peer, `${p.host} is paired with ${p.peer}`);
  t.equal((await ipShow(pairs[1]!.host))?.ifindex, before, 'the pair left behind is kept, not remade');
  t.ok((await ipShow(pairs[1]!.host))?.flags.includes('UP'), 'and brought up');

  // Someone else's link under a peer name: the batch fails, and so does that pair, with createVeth's error.
  await run('ip', ['link', 'add', 'name', other, 'type', 'bridge']);
  const clash = [{ host: randomName(), peer: randomName(), mtu: 1442, peerMac: randomMac() }, { host: randomName(), peer: other, mtu: 1442, peerMac: randomMac() }];
  removeInTeardown(t, clash[0]!.host, clash[0]!.peer, clash[1]!.host);
  await t.rejects(links.createVeths(clash), LinkConflictError, 'the clashing pair is refused');
  t.equal((await ipShow(clash[0]!.host))?.link, clash[0]!.peer, 'the pair before it was made');
  t.equal(await ipShow(clash[1]!.host), undefined, 'no half pair for the clashing one');
  t.equal((await ipShow(other))?.linkinfo?.info_kind, 'bridge', 'the other link is untouched');
});

t.test('isIntactPair: a pair back from another namespace, unchanged, and nothing else', async (t) => {
  const host = randomName();
  const peer = randomName();
  const mac = randomMac();
  const ns = `tlns-${randomBytes(4).toString('hex')}`;
  removeInTeardown(t, host, peer);
  t.teardown(() => run('ip', ['netns', 'del', ns]).then(() => undefined, () => undefined));
  await links.createVeth(host, peer, { mtu: 1442, peerMac: mac });
  t.equal(await links.isIntactPair(host, peer, { mtu: 1442, peerMac: mac }), true, 'a fresh pair');
  t.equal(await links.isIntactPair(host, peer, { mtu: 1400, peerMac: mac }), false, 'another MTU');
  t.equal(await links.isIntactPair(host, peer, { mtu: 1442, peerMac: randomMac() }), false, 'another MAC');
  t.equal(await links.isIntactPair(randomName(), peer, { mtu: 1442, peerMac: mac }), false, 'not the peer of that name');

  // Into a namespace and back, as the engine moves a container's end.
  await run('ip', ['netns', 'add', ns]);
  await run('ip', ['link', 'set', peer, 'netns', ns]);
  t.equal(await links.isIntactPair(host, peer, { mtu: 1442, peerMac: mac }), false, 'the peer is in another namespace');
  await run('ip', ['-n', ns, 'link', 'set', peer, 'name', 'eth0']);
  await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
  await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'down']);
  await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'name', peer]);
  await run('ip', ['-n', ns, 'link', 'set', peer, 'netns', '1']);
  t.equal(await links.isIntactPair(host, peer, { mtu: 1442, peerMac: mac }), true, 'back, unchanged');
  await run('ip', ['link', 'set', peer, 'mtu', '1300']);
  t.equal(await links.isIntactPair(host, peer, { mtu: 1442, peerMac: mac }), false, 'back with another MTU');
});

t.test("namesHere: this namespace's interfaces, read without a process; an end moved into a container is gone", async (t) => {
  const host = randomName();
  const peer = randomName();
  const ns = `tlns-${randomBytes(4).toString('hex')}`;
  removeInTeardown(t, host, peer);
  t.teardown(() => run('ip', ['netns', 'del', ns]).then(() => undefined, () => undefined));
  await links.createVeth(host, peer, { mtu: 1442, peerMac: randomMac() });
  const counting = countingRunner();
  const before = await new Links(counting).namesHere();
  t.ok(before.has('lo') && before.has(host) && before.has(peer), 'both ends, and lo');
  t.same(counting.calls, [], 'no process ran');
  await run('ip', ['netns', 'add', ns]);
  await run('ip', ['link', 'set', peer, 'netns', ns]);
  const after = await links.namesHere();
  t.ok(after.has(host), 'the host end stays');
  t.notOk(after.has(peer), 'the moved end is gone');
});

t.test('parseProcNetDev: names before the colon, headers skipped', async (t) => {
  const text = [
    'Inter-|   Receive                                                |  Transmit',
    ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed',
    '    lo:    3193      29    0    0    0     0          0         0     3193      29    0    0    0     0       0          0',
    'ovc0123456789ab:0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0',
    '',
  ].join('\n');
  t.same([...parseProcNetDev(text)], ['lo', 'ovc0123456789ab']);
});

t.test('disableTxChecksumOffload turns tx checksumming off', async (t) => {
  const host = randomName();
  const peer = randomName();
  removeInTeardown(t, host, peer);
  await links.createVeth(host, peer, { mtu: 1442, peerMac: randomMac() });
  t.match((await run('ethtool', ['-k', peer])).stdout, /^tx-checksumming: on/m, 'veth starts with it on');
  await links.disableTxChecksumOffload(peer);
  t.match((await run('ethtool', ['-k', peer])).stdout, /^tx-checksumming: off/m);
  await links.disableTxChecksumOffload(peer);
  t.pass('a second call is harmless');
  await t.rejects(links.disableTxChecksumOffload(randomName()), CommandError, 'a missing link is an error');
});

t.test('deleteLink: true, then false', async (t) => {
  const host = randomName();
  const peer = randomName();
  removeInTeardown(t, host, peer);
  await links.createVeth(host, peer, { mtu: 1500, peerMac: randomMac() });
  t.equal(await links.deleteLink(host), true);
  t.equal(await links.deleteLink(host), false);
  t.equal(await links.exists(peer), false, 'the peer went with it');
  t.equal(await links.exists(host), false);
});

t.test('invalid names, MACs and MTUs are rejected before anything runs', async (t) => {
  const counting = countingRunner();
  const l = new Links(counting);
  const ok = randomName();
  const mac = '02:00:00:00:00:01';
  const badNames = ['', 'x'.repeat(16), '.', '..', 'a/b', 'a b', 'eth0:1', 'eth%d', '-j', 'a\nb'];
  for (const bad of badNames) {
    await t.rejects(l.createVeth(bad, ok, { mtu: 1500, peerMac: mac }), InvalidArgumentError, `host ${JSON.stringify(bad)}`);
    await t.rejects(l.createVeth(ok, bad, { mtu: 1500, peerMac: mac }), InvalidArgumentError, `peer ${JSON.stringify(bad)}`);
    await t.rejects(l.deleteLink(bad), InvalidArgumentError);
    await t.rejects(l.exists(bad), InvalidArgumentError);
    await t.rejects(l.disableTxChecksumOffload(bad), InvalidArgumentError);
  }
  const badMacs = ['01:00:5e:00:00:01', 'ff:ff:ff:ff:ff:ff', '00:00:00:00:00:00', '02:00:00:00:00', '02-00-00-00-00-01', '02:00:00:00:00:0g', '02:00:00:00:00:001', '0200.0000.0001', ''];
  for (const bad of badMacs) {
    await t.rejects(l.createVeth(ok, randomName(), { mtu: 1500, peerMac: bad }), InvalidArgumentError, `MAC ${JSON.stringify(bad)}`);
  }
  for (const bad of [0, 67, 65536, 1500.5, Number.NaN]) {
    await t.rejects(l.createVeth(ok, randomName(), { mtu: bad, peerMac: mac }), InvalidArgumentError, `MTU ${bad}`);
  }
  await t.rejects(l.createVeth(ok, ok, { mtu: 1500, peerMac: mac }), InvalidArgumentError, 'peer named like the host side');
  const good = { host: ok, peer: randomName(), mtu: 1500, peerMac: mac };
  await t.rejects(l.createVeths([good, { ...good, host: randomName(), peerMac: 'ff:ff:ff:ff:ff:ff' }]), InvalidArgumentError, 'one bad pair in a batch: nothing runs');
  t.same(counting.calls, [], 'no command was run');
  t.equal(await ipShow(ok), undefined);
});
