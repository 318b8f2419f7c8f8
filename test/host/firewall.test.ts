/**
 * HostFirewall against real iptables, nft and legacy, each test in a network
 * namespace of its own (the machine's firewall is never touched): the
 * driver's chains and jumps, no copies under concurrent calls, Docker's
 * bridges handed back to FORWARD as they come and go, the backend Docker's
 * chains are in, and removal that leaves iptables-save as it was.
 */
import { readFile } from 'node:fs/promises';
import t, { type Test } from 'tap';
import { pino } from 'pino';
import { createRunner, type Runner } from '../../src/host/exec.js';
import { FORWARD_CHAIN, HostFirewall, NAT_CHAIN, type Backend } from '../../src/host/firewall.js';
import { Links } from '../../src/host/links.js';
import { Sysctl } from '../../src/host/sysctl.js';
import { createNetns, deleteNetns } from '../harness/netns.js';
import { run, waitFor } from '../harness/process.js';

const log = pino({ level: 'silent' });
const base = createRunner();

/** Every command of the firewall runs inside `ns`, as the driver would inside its host's namespace. */
function runnerIn(ns: string): Runner {
  return { run: (cmd, args, opts) => base.run('ip', ['netns', 'exec', ns, cmd, ...args], opts) };
}

async function save(ns: string, backend: 'nft' | 'legacy'): Promise<string> {
  const { stdout } = await run('ip', ['netns', 'exec', ns, `iptables-${backend}-save`]);
  // Counters and the header's timestamp change by themselves.
  return stdout
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .map((l) => l.replace(/\[\d+:\d+\]/, '[0:0]'))
    .join('\n');
}

async function setUp(t: Test, backend?: Backend) {
  const ns = await createNetns('ovnfw');
  t.teardown(() => deleteNetns(ns));
  const runner = runnerIn(ns);
  const firewall = new HostFirewall(
    runner,
    new Links(runner),
    { prefix: 'ovg', ...(backend ? { backend } : {}), monitor: ['ip', '-n', ns, '-o', 'monitor', 'link'], sysctl: new Sysctl('/proc/sys', runner) },
    log,
  );
  t.teardown(() => firewall.close());
  const ipt = (b: 'nft' | 'legacy', ...args: string[]) => run('ip', ['netns', 'exec', ns, `iptables-${b}`, '-w', ...args]).then((r) => r.stdout);
  return { ns, firewall, ipt };
}

t.test("IPv4: enableForwarding turns on the namespace's forwarding, once", async (t) => {
  const { ns, firewall } = await setUp(t);
  const hostBefore = await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8');
  const inNs = () => run('ip', ['netns', 'exec', ns, 'cat', '/proc/sys/net/ipv4/ip_forward']).then((r) => r.stdout.trim());
  t.equal(await inNs(), '0', 'a new namespace does not forward');
  t.equal(await firewall.forwarding(), false);
  await firewall.enableForwarding();
  t.equal(await inNs(), '1', 'on');
  t.equal(await firewall.forwarding(), true);
  await firewall.enableForwarding();
  t.equal(await inNs(), '1', 'a second call leaves it on');
  t.equal(await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8'), hostBefore, "the host's own setting untouched");
});

const A = { subnet: '10.31.0.0/24', ifName: 'ovg000000000a01' };
const B = { subnet: '10.32.0.0/24', ifName: 'ovg000000000b02' };

for (const backend of ['nft', 'legacy'] as const) {
  t.test(`${backend}: rules live in the driver's chains, one copy each, and go without a trace`, async (t) => {
    const { ns, firewall, ipt } = await setUp(t, backend);
    // The host's own rules, which must stay as they are.
    await ipt(backend, '-A', 'FORWARD', '-i', 'eth9', '-j', 'ACCEPT');
    await ipt(backend, '-t', 'nat', '-A', 'POSTROUTING', '-o', 'eth9', '-j', 'RETURN');
    const before = await save(ns, backend);

    // Concurrent Joins after a restart, and a network created meanwhile.
    await Promise.all([...Array.from({ length: 8 }, () => firewall.apply([A])), firewall.apply([A, B])]);
    await firewall.apply([A, B]);
    const forward = await ipt(backend, '-S', 'FORWARD');
    t.equal(forward.split('\n').filter((l) => l.includes(`-j ${FORWARD_CHAIN}`)).length, 1, 'one jump from FORWARD');
    const chain = await ipt(backend, '-S', FORWARD_CHAIN);
    t.match(chain, `-A ${FORWARD_CHAIN} -i ovg+ -o ovg+ -m comment --comment ovn-docker-driver -j DROP`, 'networks isolated from each other');
    t.match(chain, /-o ovg\+ -m conntrack --ctstate RELATED,ESTABLISHED .*-j ACCEPT/, 'replies come back');
    t.ok(chain.trimEnd().endsWith(`-A ${FORWARD_CHAIN} -o ovg+ -m comment --comment ovn-docker-driver -j DROP`), 'and nothing else comes in');
    for (const g of [A, B]) {
      t.equal(chain.split('\n').filter((l) => l.includes(`-i ${g.ifName} `)).length, 1, `one accept for ${g.ifName}`);
    }
    const nat = await ipt(backend, '-t', 'nat', '-S', NAT_CHAIN);
    t.equal(nat.split('\n').filter((l) => l.includes('MASQUERADE')).length, 2, 'one masquerade rule per network');
    t.match(await ipt(backend, '-t', 'nat', '-S', 'POSTROUTING'), `-j ${NAT_CHAIN}`, 'POSTROUTING jumps to our nat chain');
    t.notMatch(forward, /ovg/, 'nothing of ours in FORWARD itself');

    // A network goes: its rules go, the others stay.
    await firewall.apply([B]);
    t.notMatch(await ipt(backend, '-S', FORWARD_CHAIN), A.ifName, "the removed network's accept is gone");
    t.notMatch(await ipt(backend, '-t', 'nat', '-S', NAT_CHAIN), A.subnet.replace('/', '\\/'), 'and its masquerade rule');

    // Someone flushed FORWARD (a firewall reload): the next rebuild puts the jump back, once.
    await ipt(backend, '-F', 'FORWARD');
    await ipt(backend, '-A', 'FORWARD', '-i', 'eth9', '-j', 'ACCEPT');
    await firewall.apply([B]);
    t.equal((await ipt(backend, '-S', 'FORWARD')).split('\n').filter((l) => l.includes(FORWARD_CHAIN)).length, 1, 'jump restored once');

    await firewall.removeAll();
    t.equal(await save(ns, backend), before, 'iptables-save as before the driver ran');
  });
}

t.test("traffic to the host's bridges: published ports back to FORWARD, the rest dropped, as bridges come and go", async (t) => {
  const { ns, firewall, ipt } = await setUp(t, 'nft');
  await run('ip', ['-n', ns, 'link', 'add', 'name', 'docker0', 'type', 'bridge']);
  await firewall.apply([A]);
  const chain = await ipt('nft', '-S', FORWARD_CHAIN);
  const returnTo = (b: string) => `-A ${FORWARD_CHAIN} -i ovg+ -o ${b} -m conntrack --ctstate DNAT -m comment --comment ovn-docker-driver -j RETURN`;
  const dropTo = (b: string) => `-A ${FORWARD_CHAIN} -i ovg+ -o ${b} -m comment --comment ovn-docker-driver -j DROP`;
  t.match(chain, returnTo('docker0'), "Docker's rules judge traffic to a published port of its bridge");
  t.ok(chain.indexOf(returnTo('docker0')) < chain.indexOf(dropTo('docker0')), 'the rest is dropped');
  t.ok(chain.indexOf(dropTo('docker0')) < chain.indexOf(`-i ${A.ifName}`), 'before our accept');

  // `docker network create` makes a bridge: the monitor sees it without any call of ours.
  await run('ip', ['-n', ns, 'link', 'add', 'name', 'br-0123456789ab', 'type', 'bridge']);
  await waitFor(async () => ((await ipt('nft', '-S', FORWARD_CHAIN)).includes(returnTo('br-0123456789ab')) ? true : undefined), {
    timeoutMs: 10_000,
    what: 'a RETURN rule for the new bridge',
  });
  await run('ip', ['-n', ns, 'link', 'del', 'br-0123456789ab']);
  await waitFor(async () => (!(await ipt('nft', '-S', FORWARD_CHAIN)).includes('br-0123456789ab') ? true : undefined), {
    timeoutMs: 10_000,
    what: 'the rule of a removed bridge to go',
  });
  t.pass('rules follow the bridges');
});

t.test("the jump comes after Docker's DOCKER-USER, in the backend Docker's chains are in; rules of older versions go", async (t) => {
  const { ns, firewall, ipt } = await setUp(t);
  // Docker's chains in legacy, whatever `iptables` is: ours must be there too.
  await ipt('legacy', '-N', 'DOCKER-USER');
  await ipt('legacy', '-A', 'FORWARD', '-j', 'DOCKER-USER');
  await ipt('legacy', '-A', 'FORWARD', '-o', 'docker0', '-j', 'ACCEPT');
  // What the driver before this one wrote straight into FORWARD and POSTROUTING.
  await ipt('legacy', '-I', 'FORWARD', '1', '-i', 'ovg+', '-o', 'ovg+', '-m', 'comment', '--comment', 'ovn-docker-driver', '-j', 'DROP');
  await ipt('legacy', '-t', 'nat', '-A', 'POSTROUTING', '-s', '10.31.0.0/24', '!', '-o', A.ifName, '-m', 'comment', '--comment', 'ovn-docker-driver', '-j', 'MASQUERADE');
  const nftBefore = await save(ns, 'nft');

  await firewall.apply([A]);
  const forward = (await ipt('legacy', '-S', 'FORWARD')).split('\n').filter((l) => l.startsWith('-A'));
  t.same(
    forward,
    ['-A FORWARD -j DOCKER-USER', `-A FORWARD -m comment --comment ovn-docker-driver -j ${FORWARD_CHAIN}`, '-A FORWARD -o docker0 -j ACCEPT'],
    "right after DOCKER-USER's jump; the old rule is gone",
  );
  t.same(
    (await ipt('legacy', '-t', 'nat', '-S', 'POSTROUTING')).split('\n').filter((l) => l.startsWith('-A')),
    [`-A POSTROUTING -m comment --comment ovn-docker-driver -j ${NAT_CHAIN}`],
    'only the jump in POSTROUTING',
  );
  t.equal(await save(ns, 'nft'), nftBefore, 'nothing written to the other backend');

  // dockerd restarts: its DOCKER-USER jump and its bridge's rules go back to the top, ahead of ours.
  await ipt('legacy', '-D', 'FORWARD', '-j', 'DOCKER-USER');
  await ipt('legacy', '-I', 'FORWARD', '1', '-i', 'docker0', '!', '-o', 'docker0', '-j', 'ACCEPT');
  await ipt('legacy', '-I', 'FORWARD', '1', '-j', 'DOCKER-USER');
  // Its links change too (here: one of the test's own), and the driver looks again.
  await run('ip', ['-n', ns, 'link', 'add', 'name', 'vx7a', 'type', 'veth', 'peer', 'name', 'vx7b']);
  const forwardNow = async () => (await ipt('legacy', '-S', 'FORWARD')).split('\n').filter((l) => l.startsWith('-A'));
  // The jump is inserted in its place first and the old copy deleted next: wait for both.
  await waitFor(
    async () => {
      const rules = await forwardNow();
      return rules[1]?.endsWith(`-j ${FORWARD_CHAIN}`) && rules.filter((r) => r.endsWith(`-j ${FORWARD_CHAIN}`)).length === 1 ? true : undefined;
    },
    { timeoutMs: 10_000, what: "our jump back right after DOCKER-USER's, and only there" },
  );
  t.same(
    await forwardNow(),
    [
      '-A FORWARD -j DOCKER-USER',
      `-A FORWARD -m comment --comment ovn-docker-driver -j ${FORWARD_CHAIN}`,
      '-A FORWARD -i docker0 ! -o docker0 -j ACCEPT',
      '-A FORWARD -o docker0 -j ACCEPT',
    ],
    "after dockerd's restart, our jump is back ahead of Docker's rules, once",
  );
});

t.test("the backend Docker does not use is left untouched: not even an empty legacy table appears", async (t) => {
  const { ns, firewall } = await setUp(t);
  const legacyTables = async () => (await run('ip', ['netns', 'exec', ns, 'cat', '/proc/net/ip_tables_names'])).stdout.trim();
  t.equal(await legacyTables(), '', 'no legacy table to begin with');
  await firewall.apply([A]);
  await firewall.removeAll();
  t.equal(await legacyTables(), '', 'none after the driver came and went (iptables here is nft)');
});

for (const backend of ['nft', 'legacy'] as const) {
  t.test(`${backend}: IPv6 (family 6): the gateways' chains in ip6tables, iptables untouched, gone without a trace`, async (t) => {
    const ns = await createNetns('ovnfw6');
    t.teardown(() => deleteNetns(ns));
    const runner = runnerIn(ns);
    const firewall = new HostFirewall(runner, new Links(runner), { prefix: 'ovg', family: 6, backend, monitor: ['ip', '-n', ns, '-o', 'monitor', 'link'], sysctl: new Sysctl('/proc/sys', runner) }, log);
    t.teardown(() => firewall.close());
    const ip6t = (...args: string[]) => run('ip', ['netns', 'exec', ns, `ip6tables-${backend}`, '-w', ...args]).then((r) => r.stdout);
    const save6 = async () =>
      (await run('ip', ['netns', 'exec', ns, `ip6tables-${backend}-save`])).stdout.split('\n').filter((l) => !l.startsWith('#')).map((l) => l.replace(/\[\d+:\d+\]/, '[0:0]')).join('\n');
    // The host's own rules, in both tables (an empty table the driver made would stay, as with IPv4).
    await ip6t('-A', 'FORWARD', '-i', 'eth9', '-j', 'ACCEPT');
    await ip6t('-t', 'nat', '-A', 'POSTROUTING', '-o', 'eth9', '-j', 'RETURN');
    const before6 = await save6();
    const before4 = await save(ns, backend);

    const A6 = { subnet: 'fd00:31::/64', ifName: A.ifName };
    const B6 = { subnet: 'fd00:32:0:1::/64', ifName: B.ifName };
    await Promise.all([firewall.apply([A6]), firewall.apply([A6, B6]), firewall.apply([A6, B6])]);
    const C = '-m comment --comment ovn-docker-driver';
    t.same((await ip6t('-S', FORWARD_CHAIN)).trim().split('\n').slice(1), [
      `-A ${FORWARD_CHAIN} -i ovg+ -o ovg+ ${C} -j DROP`,
      `-A ${FORWARD_CHAIN} -o ovg+ -m conntrack --ctstate RELATED,ESTABLISHED ${C} -j ACCEPT`,
      `-A ${FORWARD_CHAIN} -i ${A.ifName} ${C} -j ACCEPT`,
      `-A ${FORWARD_CHAIN} -i ${B.ifName} ${C} -j ACCEPT`,
      `-A ${FORWARD_CHAIN} -o ovg+ ${C} -j DROP`,
    ], 'FORWARD: the same isolation as IPv4');
    t.same((await ip6t('-t', 'nat', '-S', NAT_CHAIN)).trim().split('\n').slice(1), [
      `-A ${NAT_CHAIN} -s fd00:31::/64 ! -o ${A.ifName} ${C} -j MASQUERADE`,
      `-A ${NAT_CHAIN} -s fd00:32:0:1::/64 ! -o ${B.ifName} ${C} -j MASQUERADE`,
    ], 'POSTROUTING: each subnet masqueraded');
    const forward = (await ip6t('-S', 'FORWARD')).split('\n');
    t.same(forward.filter((l) => l.includes('OVN-DOCKER')), [`-A FORWARD ${C} -j ${FORWARD_CHAIN}`], 'one jump from FORWARD');
    t.same((await ip6t('-t', 'nat', '-S', 'POSTROUTING')).split('\n').filter((l) => l.includes('OVN-DOCKER')), [`-A POSTROUTING ${C} -j ${NAT_CHAIN}`], 'one from POSTROUTING');
    t.notMatch(await save6(), /OVN-DOCKER-(INPUT|PREROUTING|OUTPUT)/, 'no chain for published ports or loopback');
    t.equal(await save(ns, backend), before4, 'iptables (IPv4) untouched');
    t.throws(() => firewall.apply([{ subnet: '10.31.0.0/24', ifName: A.ifName }]), /invalid IPv6 subnet/, 'an IPv4 subnet refused');
    t.throws(() => firewall.apply([{ subnet: 'fd00:0031::/64', ifName: A.ifName }]), /invalid IPv6 subnet/, 'one not written as ip6tables prints it refused');
    t.equal(await firewall.forwarding(), false, "forwarding() reads the namespace's IPv6 setting: off");
    await run('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
    t.equal(await firewall.forwarding(), true, 'on');
    await t.rejects(firewall.enableForwarding(), /operator/, 'and never turns it on');

    await firewall.removeAll();
    t.equal(await save6(), before6, 'removeAll: ip6tables-save as before');
  });
}
