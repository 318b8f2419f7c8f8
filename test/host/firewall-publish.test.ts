/**
 * HostFirewall.publish() against real iptables (nft and legacy), each test in
 * network namespaces of its own that it deletes by their exact names (the
 * machine's firewall and sysctls are never touched, so no host lock is
 * taken): the exact lines in our chains and the jumps into them, a set
 * replaced and emptied, route_localnet on exactly the gateway ports that need
 * it, bad input refused before anything changes, removal that leaves
 * iptables-save as it was; and the data plane: a "host" namespace whose
 * `ovg…` veth leads to a "container" namespace, and an "outside" namespace
 * behind another veth of the host, with TCP and UDP through published ports
 * from outside, from the host (127.0.0.1 too) and from the container itself
 * (hairpin), nothing through unpublished ones, and no way from the container
 * to the host's loopback services.
 */
import { spawn } from 'node:child_process';
import t, { type Test } from 'tap';
import { pino } from 'pino';
import { createRunner, type Runner } from '../../src/host/exec.js';
import {
  FORWARD_CHAIN,
  HostFirewall,
  INPUT_CHAIN,
  NAT_CHAIN,
  OUTPUT_CHAIN,
  PREROUTING_CHAIN,
  type GatewayRule,
  type PublishedRule,
} from '../../src/host/firewall.js';
import { Links } from '../../src/host/links.js';
import { InvalidArgumentError } from '../../src/host/names.js';
import { Sysctl } from '../../src/host/sysctl.js';
import { createNetns, deleteNetns } from '../harness/netns.js';
import { run, waitFor } from '../harness/process.js';

const log = pino({ level: 'silent' });
const base = createRunner();
const C = '-m comment --comment ovn-docker-driver';

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

/** The `-A` lines of one chain of one table, as iptables-save prints them. */
function chainOf(saved: string, table: 'filter' | 'nat', chain: string): string[] {
  const start = saved.indexOf(`*${table}\n`);
  if (start < 0) return [];
  const end = saved.indexOf('\nCOMMIT', start);
  return saved
    .slice(start, end)
    .split('\n')
    .filter((l) => l.startsWith(`-A ${chain} `));
}

async function routeLocalnet(ns: string, ifName: string): Promise<string> {
  return (await run('ip', ['netns', 'exec', ns, 'cat', `/proc/sys/net/ipv4/conf/${ifName}/route_localnet`])).stdout.trim();
}

/** `backend` undefined: the firewall looks for Docker's chains, as the driver does; `ipt` is then nft's. */
async function setUp(t: Test, backend: 'nft' | 'legacy' | undefined, opts: { watch?: boolean } = {}) {
  const ns = await createNetns('ovnfp');
  t.teardown(() => deleteNetns(ns));
  const runner = runnerIn(ns);
  const firewall = new HostFirewall(
    runner,
    new Links(runner),
    { prefix: 'ovg', ...(backend ? { backend } : {}), monitor: ['ip', '-n', ns, '-o', 'monitor', 'link'], sysctl: new Sysctl('/proc/sys', runner) },
    log,
  );
  t.teardown(() => firewall.close());
  // No link monitor nor periodic rebuild: a test that changes rules by hand decides when we rebuild.
  if (opts.watch === false) firewall.close();
  const ipt = (...args: string[]) => run('ip', ['netns', 'exec', ns, `iptables-${backend ?? 'nft'}`, '-w', ...args]).then((r) => r.stdout);
  return { ns, firewall, ipt };
}

const A = 'ovg0000000060a1';
const B = 'ovg0000000061b2';
const GA: GatewayRule = { subnet: '10.60.0.0/24', ifName: A };
const GB: GatewayRule = { subnet: '10.61.0.0/24', ifName: B };
const rule = (r: Partial<PublishedRule>): PublishedRule => ({
  protocol: 'tcp',
  hostIp: '',
  hostPort: 8080,
  containerIp: '10.60.0.2',
  containerPort: 80,
  ifName: A,
  subnet: GA.subnet,
  ...r,
});

/** The gateways' own lines of OVN-DOCKER-FORWARD (no bridges in these namespaces), after `published`. */
function forwardLines(published: string[]): string[] {
  return [
    ...published,
    `-A ${FORWARD_CHAIN} -i ovg+ -o ovg+ ${C} -j DROP`,
    `-A ${FORWARD_CHAIN} -o ovg+ -m conntrack --ctstate RELATED,ESTABLISHED ${C} -j ACCEPT`,
    `-A ${FORWARD_CHAIN} -i ${A} ${C} -j ACCEPT`,
    `-A ${FORWARD_CHAIN} -i ${B} ${C} -j ACCEPT`,
    `-A ${FORWARD_CHAIN} -o ovg+ ${C} -j DROP`,
  ];
}
const GATEWAY_NAT = [`-A ${NAT_CHAIN} -s 10.60.0.0/24 ! -o ${A} ${C} -j MASQUERADE`, `-A ${NAT_CHAIN} -s 10.61.0.0/24 ! -o ${B} ${C} -j MASQUERADE`];
const GUARD = [`-A ${INPUT_CHAIN} -d 127.0.0.0/8 -i ovg+ -m conntrack ! --ctstate RELATED,ESTABLISHED ${C} -j DROP`];
const PRE_RETURN = `-A ${PREROUTING_CHAIN} -d 127.0.0.0/8 ! -i lo ${C} -j RETURN`;
const JUMPS: [table: 'filter' | 'nat', from: string, line: string][] = [
  ['filter', 'FORWARD', `-A FORWARD ${C} -j ${FORWARD_CHAIN}`],
  ['filter', 'INPUT', `-A INPUT ${C} -j ${INPUT_CHAIN}`],
  ['nat', 'POSTROUTING', `-A POSTROUTING ${C} -j ${NAT_CHAIN}`],
  ['nat', 'PREROUTING', `-A PREROUTING -m addrtype --dst-type LOCAL ${C} -j ${PREROUTING_CHAIN}`],
  ['nat', 'OUTPUT', `-A OUTPUT -m addrtype --dst-type LOCAL ${C} -j ${OUTPUT_CHAIN}`],
];

for (const backend of ['nft', 'legacy'] as const) {
  t.test(`${backend}: published ports as exact lines in our chains, jumps once each, replaced, emptied, removed without a trace`, async (t) => {
    const { ns, firewall, ipt } = await setUp(t, backend);
    // Stand-ins for the gateway ports (route_localnet needs the interface), and one a driver before
    // this one left with route_localnet on.
    for (const [i, name] of [A, B, 'ovg00000000dead'].entries()) await run('ip', ['-n', ns, 'link', 'add', name, 'type', 'veth', 'peer', 'name', `peer${i}`]);
    await run('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.conf.ovg00000000dead.route_localnet=1']);
    // The host's own rules in every chain we jump from, which must stay as they are, and after ours.
    await ipt('-A', 'FORWARD', '-i', 'eth9', '-j', 'ACCEPT');
    await ipt('-A', 'INPUT', '-i', 'eth9', '-j', 'ACCEPT');
    await ipt('-t', 'nat', '-A', 'POSTROUTING', '-o', 'eth9', '-j', 'RETURN');
    await ipt('-t', 'nat', '-A', 'PREROUTING', '-i', 'eth9', '-j', 'RETURN');
    await ipt('-t', 'nat', '-A', 'OUTPUT', '-o', 'eth9', '-j', 'RETURN');
    const before = await save(ns, backend);

    await firewall.apply([GA, GB]);
    const gatewaysOnly = await save(ns, backend);
    t.equal(await routeLocalnet(ns, 'ovg00000000dead'), '0', 'route_localnet a driver before left on goes off at the first rebuild');
    t.same(chainOf(gatewaysOnly, 'nat', PREROUTING_CHAIN), [], 'no published port yet: the DNAT chains are empty');
    t.same(chainOf(gatewaysOnly, 'nat', OUTPUT_CHAIN), [], '(OUTPUT too)');

    const set1: PublishedRule[] = [
      rule({}),
      rule({ protocol: 'udp', hostIp: '192.168.77.1', hostPort: 5353, containerIp: '10.60.0.3', containerPort: 53 }),
      rule({ hostIp: '127.0.0.1', hostPort: 8081, containerIp: '10.61.0.5', containerPort: 81, ifName: B, subnet: GB.subnet }),
      rule({ protocol: 'sctp', hostPort: 9000, containerIp: '10.61.0.5', containerPort: 9000, ifName: B, subnet: GB.subnet }),
      // A second host port of the same container port: its FORWARD and hairpin lines are not repeated.
      rule({ hostPort: 8088 }),
    ];
    // Concurrent calls, as Joins and publications come: one rebuild at a time, one copy of everything.
    await Promise.all([firewall.publish(set1), firewall.apply([GA, GB]), firewall.publish(set1), firewall.apply([GA, GB])]);
    // Someone added a jump into our DNAT chain without the addrtype match (it would DNAT forwarded traffic too):
    // the next full rebuild (gateways changed, links changed, or the periodic check) removes it.
    await ipt('-t', 'nat', '-A', 'PREROUTING', '-j', PREROUTING_CHAIN);
    await firewall.apply([GA, GB]);
    let saved = await save(ns, backend);
    t.same(
      chainOf(saved, 'filter', FORWARD_CHAIN),
      forwardLines([
        `-A ${FORWARD_CHAIN} -d 10.60.0.2/32 -o ${A} -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT ${C} -j ACCEPT`,
        `-A ${FORWARD_CHAIN} -s 10.60.0.2/32 -i ${A} -p tcp -m tcp --sport 80 -m conntrack --ctstate DNAT --ctdir REPLY ${C} -j ACCEPT`,
        `-A ${FORWARD_CHAIN} -d 10.60.0.3/32 -o ${A} -p udp -m udp --dport 53 -m conntrack --ctstate DNAT ${C} -j ACCEPT`,
        `-A ${FORWARD_CHAIN} -s 10.60.0.3/32 -i ${A} -p udp -m udp --sport 53 -m conntrack --ctstate DNAT --ctdir REPLY ${C} -j ACCEPT`,
        `-A ${FORWARD_CHAIN} -d 10.61.0.5/32 -o ${B} -p tcp -m tcp --dport 81 -m conntrack --ctstate DNAT ${C} -j ACCEPT`,
        `-A ${FORWARD_CHAIN} -s 10.61.0.5/32 -i ${B} -p tcp -m tcp --sport 81 -m conntrack --ctstate DNAT --ctdir REPLY ${C} -j ACCEPT`,
        `-A ${FORWARD_CHAIN} -d 10.61.0.5/32 -o ${B} -p sctp -m sctp --dport 9000 -m conntrack --ctstate DNAT ${C} -j ACCEPT`,
        `-A ${FORWARD_CHAIN} -s 10.61.0.5/32 -i ${B} -p sctp -m sctp --sport 9000 -m conntrack --ctstate DNAT --ctdir REPLY ${C} -j ACCEPT`,
      ]),
      'FORWARD: each published port and its replies accepted, before the drop between our networks; the final drop stays last',
    );
    const dnat = (chain: string) => [
      `-A ${chain} -d 192.168.77.1/32 -p udp -m udp --dport 5353 ${C} -j DNAT --to-destination 10.60.0.3:53`,
      `-A ${chain} -d 127.0.0.1/32 -p tcp -m tcp --dport 8081 ${C} -j DNAT --to-destination 10.61.0.5:81`,
      `-A ${chain} -p tcp -m tcp --dport 8080 ${C} -j DNAT --to-destination 10.60.0.2:80`,
      `-A ${chain} -p sctp -m sctp --dport 9000 ${C} -j DNAT --to-destination 10.61.0.5:9000`,
      `-A ${chain} -p tcp -m tcp --dport 8088 ${C} -j DNAT --to-destination 10.60.0.2:80`,
    ];
    t.same(chainOf(saved, 'nat', PREROUTING_CHAIN), [PRE_RETURN, ...dnat(PREROUTING_CHAIN)], 'PREROUTING: loopback destinations from elsewhere pass, then one DNAT per port, host addresses first');
    t.same(chainOf(saved, 'nat', OUTPUT_CHAIN), dnat(OUTPUT_CHAIN), 'OUTPUT: the same DNATs for the host itself');
    t.same(
      chainOf(saved, 'nat', NAT_CHAIN),
      [
        ...GATEWAY_NAT,
        `-A ${NAT_CHAIN} -s 10.60.0.0/24 -d 10.60.0.2/32 -o ${A} -p tcp -m tcp --dport 80 ${C} -j MASQUERADE`,
        `-A ${NAT_CHAIN} -s 10.60.0.0/24 -d 10.60.0.3/32 -o ${A} -p udp -m udp --dport 53 ${C} -j MASQUERADE`,
        `-A ${NAT_CHAIN} -s 10.61.0.0/24 -d 10.61.0.5/32 -o ${B} -p tcp -m tcp --dport 81 ${C} -j MASQUERADE`,
        `-A ${NAT_CHAIN} -s 10.61.0.0/24 -d 10.61.0.5/32 -o ${B} -p sctp -m sctp --dport 9000 ${C} -j MASQUERADE`,
        `-A ${NAT_CHAIN} -s 127.0.0.0/8 -o ${A} ${C} -j MASQUERADE`,
        `-A ${NAT_CHAIN} -s 127.0.0.0/8 -o ${B} ${C} -j MASQUERADE`,
      ],
      'POSTROUTING: the gateways, hairpin per port, loopback once per port with a rule on every address or 127.0.0.1',
    );
    t.same(chainOf(saved, 'filter', INPUT_CHAIN), GUARD, "INPUT: nothing new from our networks to the host's loopback addresses");
    for (const [table, from, line] of JUMPS) {
      const rules = chainOf(saved, table, from);
      t.same(
        rules.filter((l) => l.includes('OVN-DOCKER')),
        [line],
        `one jump from ${from}, with its matches (the one without addrtype is gone)`,
      );
      t.equal(rules[0], line, `${from}: ours first (no DOCKER-USER here)`);
      t.ok(rules.some((l) => l.includes('eth9')), `${from}: the host's own rule stays`);
    }
    t.equal(await routeLocalnet(ns, A), '1', `route_localnet on ${A} (a port published on every address)`);
    t.equal(await routeLocalnet(ns, B), '1', `route_localnet on ${B} (a port published on 127.0.0.1)`);

    // Replaced: exactly the new set, nothing of the old one.
    await firewall.publish([rule({ hostIp: '192.168.77.1', hostPort: 8443, containerIp: '10.60.0.9', containerPort: 443 })]);
    saved = await save(ns, backend);
    t.same(
      chainOf(saved, 'filter', FORWARD_CHAIN),
      forwardLines([
        `-A ${FORWARD_CHAIN} -d 10.60.0.9/32 -o ${A} -p tcp -m tcp --dport 443 -m conntrack --ctstate DNAT ${C} -j ACCEPT`,
        `-A ${FORWARD_CHAIN} -s 10.60.0.9/32 -i ${A} -p tcp -m tcp --sport 443 -m conntrack --ctstate DNAT --ctdir REPLY ${C} -j ACCEPT`,
      ]),
      'replaced: FORWARD has the new port only',
    );
    const dnat2 = (chain: string) => `-A ${chain} -d 192.168.77.1/32 -p tcp -m tcp --dport 8443 ${C} -j DNAT --to-destination 10.60.0.9:443`;
    t.same(chainOf(saved, 'nat', PREROUTING_CHAIN), [PRE_RETURN, dnat2(PREROUTING_CHAIN)], 'replaced: PREROUTING');
    t.same(chainOf(saved, 'nat', OUTPUT_CHAIN), [dnat2(OUTPUT_CHAIN)], 'replaced: OUTPUT');
    t.same(
      chainOf(saved, 'nat', NAT_CHAIN),
      [...GATEWAY_NAT, `-A ${NAT_CHAIN} -s 10.60.0.0/24 -d 10.60.0.9/32 -o ${A} -p tcp -m tcp --dport 443 ${C} -j MASQUERADE`],
      'replaced: POSTROUTING, no loopback masquerade left (no port on every address or loopback)',
    );
    t.equal(await routeLocalnet(ns, A), '0', `route_localnet off on ${A} again`);
    t.equal(await routeLocalnet(ns, B), '0', `and on ${B}`);

    // A port published on loopback behind a gateway port that is not there yet: set once the link appears.
    const C1 = 'ovg0000000062c3';
    await firewall.publish([rule({ hostIp: '127.0.0.1', ifName: C1, subnet: '10.62.0.0/24', containerIp: '10.62.0.2' })]);
    await run('ip', ['-n', ns, 'link', 'add', C1, 'type', 'veth', 'peer', 'name', 'peer9']);
    await waitFor(async () => ((await routeLocalnet(ns, C1)) === '1' ? true : undefined), { timeoutMs: 10_000, what: `route_localnet on ${C1} once it exists` });
    t.pass('route_localnet follows a gateway port that appears after its publication');

    // Emptied: the DNAT chains are empty, the gateways' rules as they were before any publication.
    await firewall.publish([]);
    saved = await save(ns, backend);
    t.same(chainOf(saved, 'nat', PREROUTING_CHAIN), [], 'emptied: PREROUTING chain empty');
    t.same(chainOf(saved, 'nat', OUTPUT_CHAIN), [], 'emptied: OUTPUT chain empty');
    t.equal(saved, gatewaysOnly, "emptied: iptables-save exactly as with the gateways' rules alone");
    t.equal(await routeLocalnet(ns, C1), '0', 'emptied: route_localnet off');

    await firewall.publish(set1);
    await firewall.removeAll();
    t.equal(await save(ns, backend), before, 'removeAll: iptables-save as before the driver ran');
    for (const name of [A, B, C1]) t.equal(await routeLocalnet(ns, name), '0', `removeAll: route_localnet off on ${name}`);
  });
}

t.test('a change of published ports alone is one iptables-restore of the same chains a full rebuild writes', async (t) => {
  const { ns } = await setUp(t, 'nft', { watch: false });
  await run('ip', ['-n', ns, 'link', 'add', A, 'type', 'veth', 'peer', 'name', 'peer0']);
  // Every command the firewall runs, by its name (the runner of setUp runs them inside ns).
  const commands: string[] = [];
  const counted = runnerIn(ns);
  const counting = new HostFirewall(
    { run: (cmd, args, opts) => (commands.push(cmd), counted.run(cmd, args, opts)) },
    new Links(counted),
    { prefix: 'ovg', backend: 'nft', sysctl: new Sysctl('/proc/sys', { run: (cmd, args, opts) => (commands.push(cmd), counted.run(cmd, args, opts)) }) },
    log,
  );
  t.teardown(() => counting.close());
  await counting.apply([GA]);
  t.ok(commands.filter((c) => c.startsWith('iptables')).length > 1, `the first rebuild looks at the jumps too (${commands.join(' ')})`);

  commands.length = 0;
  await counting.publish([rule({ hostIp: '192.168.77.1' })]);
  t.same(commands, ['iptables-nft-restore'], 'a port published on one address: one restore, nothing else');
  const light = await save(ns, 'nft');

  commands.length = 0;
  await counting.publish([rule({ hostIp: '192.168.77.1' }), rule({ hostPort: 8081 })]);
  t.equal(commands[0], 'iptables-nft-restore', 'a port on every address: the restore first');
  t.ok(commands.includes('tee'), `then route_localnet of its gateway port (${commands.join(' ')})`);
  t.equal(await routeLocalnet(ns, A), '1', 'route_localnet on');
  commands.length = 0;
  await counting.publish([rule({ hostIp: '192.168.77.1' }), rule({ hostPort: 8082 })]);
  t.same(commands, ['iptables-nft-restore'], 'another such port behind the same gateway port: route_localnet is left as it is');

  await counting.publish([rule({ hostIp: '192.168.77.1' })]);
  t.equal(await routeLocalnet(ns, A), '0', 'and off again when none is left');
  t.equal(await save(ns, 'nft'), light, 'the same rules as before the two changes');
  await counting.apply([GA]);
  t.equal(await save(ns, 'nft'), light, 'a full rebuild of the same state writes exactly what the restore alone wrote');

  await counting.removeAll();
  commands.length = 0;
  await counting.publish([rule({ hostIp: '192.168.77.1' })]);
  const saved = await save(ns, 'nft');
  t.ok(commands.filter((c) => c.startsWith('iptables')).length > 1, 'after removeAll a publication looks at the jumps again');
  t.same(chainOf(saved, 'filter', 'FORWARD').filter((l) => l.includes(FORWARD_CHAIN)), [`-A FORWARD ${C} -j ${FORWARD_CHAIN}`], 'and puts the jump back');
  await counting.removeAll();
});

t.test("Docker's chains show up in the other backend: every chain and jump of ours moves there, none stays behind", async (t) => {
  const { ns, firewall } = await setUp(t, undefined, { watch: false });
  const legacy = (...args: string[]) => run('ip', ['netns', 'exec', ns, 'iptables-legacy', '-w', ...args]);
  const nft = (...args: string[]) => run('ip', ['netns', 'exec', ns, 'iptables-nft', '-w', ...args]);
  // The host's own rules in both, so both have their tables before the driver comes.
  for (const ipt of [legacy, nft]) {
    await ipt('-A', 'INPUT', '-i', 'eth9', '-j', 'ACCEPT');
    await ipt('-t', 'nat', '-A', 'PREROUTING', '-i', 'eth9', '-j', 'RETURN');
  }
  const nftBefore = await save(ns, 'nft');
  const legacyBefore = await save(ns, 'legacy');
  await firewall.apply([GA]);
  await firewall.publish([rule({})]);
  // No Docker yet: `iptables` here is nft.
  t.match(await save(ns, 'nft'), `-j ${PREROUTING_CHAIN}`, 'written to nft while Docker has no chain anywhere');
  t.equal(await save(ns, 'legacy'), legacyBefore, 'legacy untouched meanwhile');

  // dockerd starts with iptables-legacy.
  await legacy('-N', 'DOCKER-USER');
  await legacy('-A', 'FORWARD', '-j', 'DOCKER-USER');
  await firewall.apply([GA]);
  t.equal(await save(ns, 'nft'), nftBefore, 'nft as before the driver came: every chain and jump of ours gone');
  const saved = await save(ns, 'legacy');
  for (const [table, from, line] of JUMPS) t.same(chainOf(saved, table, from).filter((l) => l.includes('OVN-DOCKER')), [line], `legacy: the jump from ${from}`);
  t.same(chainOf(saved, 'nat', OUTPUT_CHAIN), [`-A ${OUTPUT_CHAIN} -p tcp -m tcp --dport 8080 ${C} -j DNAT --to-destination 10.60.0.2:80`], 'legacy: the published port');
  t.same(chainOf(saved, 'filter', INPUT_CHAIN), GUARD, "legacy: INPUT's guard");

  await firewall.removeAll();
  t.equal(await save(ns, 'nft'), nftBefore, 'removeAll: nft as before');
  t.equal((await save(ns, 'legacy')).replace(/.*DOCKER-USER.*\n/g, ''), legacyBefore, 'removeAll: legacy as before, but for what Docker added');
});

t.test('bad input throws and changes nothing', async (t) => {
  const { ns, firewall } = await setUp(t, 'nft', { watch: false });
  await firewall.apply([GA, GB]);
  const good = rule({});
  await firewall.publish([good]);
  const before = await save(ns, 'nft');
  const bad: [string, Partial<PublishedRule> | Record<string, unknown>][] = [
    ['protocol icmp', { protocol: 'icmp' }],
    ['protocol in capitals', { protocol: 'TCP' }],
    ['IPv6 host address', { hostIp: '::1' }],
    ['0.0.0.0 instead of ""', { hostIp: '0.0.0.0' }],
    ['host address out of range', { hostIp: '10.0.0.256' }],
    ['host address with a prefix', { hostIp: '192.168.77.1/32' }],
    ['host address with a newline', { hostIp: '192.168.77.1\n-A INPUT -j ACCEPT' }],
    ['host port 0', { hostPort: 0 }],
    ['host port 65536', { hostPort: 65536 }],
    ['host port not an integer', { hostPort: 80.5 }],
    ['host port as a string', { hostPort: '8080' }],
    ['container port 0', { containerPort: 0 }],
    ['container port negative', { containerPort: -1 }],
    ['container address with a prefix', { containerIp: '10.60.0.2/32' }],
    ['IPv6 container address', { containerIp: 'fd00::2' }],
    ['container address outside the subnet', { containerIp: '10.99.0.2' }],
    ['container address missing', { containerIp: undefined }],
    ['gateway port not ours', { ifName: 'eth0' }],
    ['gateway port a wildcard', { ifName: 'ovg+' }],
    ['gateway port name too long', { ifName: 'ovg0000000060a1x' }],
    ['gateway port name with a space', { ifName: 'ovg 1' }],
    ['subnet prefix length 33', { subnet: '10.60.0.0/33' }],
    ['subnet with host bits', { subnet: '10.60.0.5/24' }],
    ['subnet without a prefix length', { subnet: '10.60.0.0' }],
    ['IPv6 subnet', { subnet: 'fd00::/64' }],
  ];
  for (const [why, change] of bad) {
    const wrong = { ...good, ...change } as PublishedRule;
    t.throws(() => firewall.publish([rule({ hostPort: 9999 }), wrong]), InvalidArgumentError, why);
  }
  t.throws(
    () => firewall.publish([rule({}), rule({ containerIp: '10.60.0.7' })]),
    { message: /published twice/ },
    'one host address, port and protocol to two containers',
  );
  t.equal(await save(ns, 'nft'), before, 'iptables-save unchanged');
  // And the wanted set is still the good one: a rebuild writes exactly what was there.
  await firewall.apply([GA, GB]);
  t.equal(await save(ns, 'nft'), before, 'a rebuild after the bad calls writes the set in force before them');
  // The same port given twice alike is one rule.
  await firewall.publish([good, { ...good }]);
  t.equal(await save(ns, 'nft'), before, 'the same rule twice is written once');
});

// ---- the data plane ---------------------------------------------------------

const GW = 'ovg00000060d001';
/** Another network of ours on the same host, with a container of its own. */
const GW2 = 'ovg00000061d002';
const CTR2 = '10.61.0.2';
const GW2_IP = '10.61.0.1';
const HOST_OUT = '192.168.77.1';
const OUT = '192.168.77.2';
const CTR = '10.60.0.2';
const GW_IP = '10.60.0.1';

/** A node script in `ns` that prints "listening" once its servers are up; stopped in teardown. */
async function serve(t: Test, ns: string, script: string): Promise<void> {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.teardown(async () => {
    child.kill('SIGTERM');
    await exited;
  });
  await new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.stdout.once('data', () => resolve());
    void exited.then(() => reject(new Error(`servers in ${ns} exited early`)));
  });
}

/** TCP servers that answer "<name> got <payload> from <peer address>" once the client has sent all. */
function tcpServers(ip: string, ports: number[], name: (port: number) => string, ready = ports.length): string {
  return `
    const net = require('net'); let up = 0; const ready = () => { if (++up === ${ready}) console.log('listening'); };
    for (const port of ${JSON.stringify(ports)}) {
      const names = ${JSON.stringify(Object.fromEntries(ports.map((p) => [p, name(p)])))};
      net.createServer((s) => { let d = ''; s.on('data', (c) => (d += c)); s.on('error', () => {});
        s.on('end', () => s.end(names[port] + ' got ' + d + ' from ' + s.remoteAddress)); }).listen(port, ${JSON.stringify(ip)}, ready);
    }`;
}

/**
 * Send `payload` over TCP from ns with busybox nc (2 s connect timeout); what came back, or a
 * rejection. The payload goes through a shell pipe, not the Runner's `input`: nc refused at once
 * exits before reading it, and writing to its closed stdin would be an uncaught EPIPE.
 */
async function tcp(ns: string, ip: string, port: number, payload: string): Promise<string> {
  const send = 'printf %s "$0" | busybox nc -w 2 "$1" "$2"';
  const { stdout } = await run('ip', ['netns', 'exec', ns, 'sh', '-c', send, payload, ip, String(port)], { timeoutMs: 8000 });
  return stdout;
}

/** One UDP datagram from ns and the answer (busybox's nc has no -u), or a rejection after 3 s. */
async function udp(ns: string, ip: string, port: number, payload: string): Promise<string> {
  const client = `const u = require('dgram').createSocket('udp4'); u.on('message', (m) => { process.stdout.write(m); process.exit(0); });
    u.send(${JSON.stringify(payload)}, ${port}, ${JSON.stringify(ip)}); setTimeout(() => process.exit(2), 3000);`;
  const { stdout } = await base.run('ip', ['netns', 'exec', ns, process.execPath, '-e', client], { timeoutMs: 8000 });
  return stdout;
}

const fails = (p: Promise<unknown>): Promise<boolean> => p.then(() => false, () => true);

for (const backend of ['nft', 'legacy'] as const) {
  t.test(`${backend}: data plane through published ports: from outside, from the host, hairpin; nothing else`, async (t) => {
    const { ns: host, firewall, ipt } = await setUp(t, backend, { watch: false });
    const ctr = await createNetns('ovnfc');
    t.teardown(() => deleteNetns(ctr));
    const out = await createNetns('ovnfo');
    t.teardown(() => deleteNetns(out));
    // The gateway port's stand-in, and the container behind it.
    await run('ip', ['-n', host, 'link', 'add', GW, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ctr]);
    await run('ip', ['-n', host, 'addr', 'add', `${GW_IP}/24`, 'dev', GW]);
    await run('ip', ['-n', host, 'link', 'set', GW, 'up']);
    await run('ip', ['-n', ctr, 'addr', 'add', `${CTR}/24`, 'dev', 'eth0']);
    await run('ip', ['-n', ctr, 'link', 'set', 'eth0', 'up']);
    await run('ip', ['-n', ctr, 'route', 'add', 'default', 'via', GW_IP]);
    const ctr2 = await createNetns('ovnfc');
    t.teardown(() => deleteNetns(ctr2));
    await run('ip', ['-n', host, 'link', 'add', GW2, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ctr2]);
    await run('ip', ['-n', host, 'addr', 'add', `${GW2_IP}/24`, 'dev', GW2]);
    await run('ip', ['-n', host, 'link', 'set', GW2, 'up']);
    await run('ip', ['-n', ctr2, 'addr', 'add', `${CTR2}/24`, 'dev', 'eth0']);
    await run('ip', ['-n', ctr2, 'link', 'set', 'eth0', 'up']);
    await run('ip', ['-n', ctr2, 'route', 'add', 'default', 'via', GW2_IP]);
    const gateways: GatewayRule[] = [
      { subnet: '10.60.0.0/24', ifName: GW },
      { subnet: '10.61.0.0/24', ifName: GW2 },
    ];
    // The world outside the host, which routes our subnet through it (a LAN host might).
    await run('ip', ['-n', host, 'link', 'add', 'vout', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', out]);
    await run('ip', ['-n', host, 'addr', 'add', `${HOST_OUT}/24`, 'dev', 'vout']);
    await run('ip', ['-n', host, 'link', 'set', 'vout', 'up']);
    await run('ip', ['-n', out, 'addr', 'add', `${OUT}/24`, 'dev', 'eth0']);
    await run('ip', ['-n', out, 'link', 'set', 'eth0', 'up']);
    await run('ip', ['-n', out, 'route', 'add', '10.60.0.0/24', 'via', HOST_OUT]);
    await run('ip', ['netns', 'exec', host, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);

    // The container: TCP on 80 (published as 8080) and 8081 (never published), UDP on 5353.
    await serve(
      t,
      ctr,
      `${tcpServers(CTR, [80, 8081], (p) => `ctr:${p}`, 3)}
      const u = require('dgram').createSocket('udp4');
      u.on('message', (m, r) => u.send('ctr:udp got ' + m + ' from ' + r.address, r.port, r.address)); u.bind(5353, ${JSON.stringify(CTR)}, ready);`,
    );
    // A service of the host's on its loopback address only.
    await serve(t, host, tcpServers('127.0.0.1', [9090], () => 'host-loopback'));
    t.match(await tcp(host, '127.0.0.1', 9090, 'x'), 'host-loopback got x', "(the host's loopback service answers the host)");

    // Rules of the host's own (as Docker's would be), so the tables exist before the driver comes.
    await ipt('-A', 'INPUT', '-i', 'eth9', '-j', 'ACCEPT');
    await ipt('-t', 'nat', '-A', 'POSTROUTING', '-o', 'eth9', '-j', 'RETURN');
    const before = await save(host, backend);
    await firewall.apply(gateways);
    const published = rule({ ifName: GW });
    const udpRule = rule({ protocol: 'udp', hostPort: 5353, containerPort: 5353, ifName: GW });
    await firewall.publish([published, udpRule]);
    t.equal(await routeLocalnet(host, GW), '1', 'route_localnet on the gateway port');
    t.equal(await routeLocalnet(host, GW2), '0', 'and not on the other network\'s, which publishes nothing');

    t.equal(await tcp(out, HOST_OUT, 8080, 'hello'), `ctr:80 got hello from ${OUT}`, "outside -> host:8080 reaches the container, the client's address kept");
    t.equal(await tcp(host, '127.0.0.1', 8080, 'lo'), `ctr:80 got lo from ${GW_IP}`, 'the host -> 127.0.0.1:8080 (masqueraded behind the gateway address)');
    t.equal(await tcp(host, HOST_OUT, 8080, 'self'), `ctr:80 got self from ${HOST_OUT}`, 'the host -> its own address:8080');
    t.equal(await tcp(ctr, GW_IP, 8080, 'hp1'), `ctr:80 got hp1 from ${GW_IP}`, 'the container -> its gateway:8080 (hairpin)');
    t.equal(await tcp(ctr, HOST_OUT, 8080, 'hp2'), `ctr:80 got hp2 from ${GW_IP}`, "the container -> the host's other address:8080 (hairpin)");
    t.equal(await tcp(ctr2, GW2_IP, 8080, 'net2'), `ctr:80 got net2 from ${GW_IP}`, 'a container of another network of ours -> its own gateway:8080');
    t.equal(await udp(out, HOST_OUT, 5353, 'dgram'), `ctr:udp got dgram from ${OUT}`, 'UDP: outside -> host:5353 reaches the container and back');

    t.ok(await fails(tcp(out, HOST_OUT, 8081, 'no')), 'outside -> host:8081 (not published) fails');
    t.ok(await fails(tcp(out, CTR, 8081, 'no')), 'outside, routed straight to the container -> :8081 fails (dropped, timed out)');
    t.ok(await fails(tcp(out, CTR, 80, 'no')), 'and -> :80 too: only the published host port leads in');
    t.ok(await fails(tcp(ctr2, CTR, 80, 'no')), 'but not straight to the container: our networks stay apart');
    t.ok(await fails(tcp(ctr, GW_IP, 9090, 'no')), "the container -> the gateway address:9090 (the host's loopback service) fails");

    // A container that sends to 127.0.0.1 through its gateway (its own namespace, its own routes:
    // CVE-2020-8558's way to a node's loopback services once route_localnet is on). Without
    // 127.0.0.1 of its own, and taking answers from 127.0.0.1 on eth0.
    await run('ip', ['-n', ctr, 'addr', 'del', '127.0.0.1/8', 'dev', 'lo']);
    await run('ip', ['-n', ctr, 'route', 'add', '127.0.0.0/8', 'via', GW_IP, 'dev', 'eth0']);
    await run('ip', ['netns', 'exec', ctr, 'sysctl', '-qw', 'net.ipv4.conf.eth0.route_localnet=1']);
    t.ok(await fails(tcp(ctr, '127.0.0.1', 9090, 'sneak')), "the container -> 127.0.0.1:9090 through the host fails: INPUT's guard");
    t.ok(await fails(tcp(ctr, '127.0.0.1', 8080, 'sneak')), 'nor does -> 127.0.0.1:8080 get DNAT-ed (loopback destinations from elsewhere pass PREROUTING untouched)');
    // The control: without the guard the same attempt reaches the host's loopback service, so the
    // guard is what stops it (and the rebuild puts it back).
    await ipt('-F', INPUT_CHAIN);
    t.equal(await tcp(ctr, '127.0.0.1', 9090, 'sneak'), `host-loopback got sneak from ${CTR}`, "control: without the guard the container reaches the host's loopback service");
    await firewall.apply(gateways);
    t.ok(await fails(tcp(ctr, '127.0.0.1', 9090, 'sneak')), 'the rebuild restores the guard');

    // On 127.0.0.1 only: the host's loopback, and nothing else.
    await firewall.publish([rule({ hostIp: '127.0.0.1', ifName: GW }), udpRule]);
    t.equal(await tcp(host, '127.0.0.1', 8080, 'lo2'), `ctr:80 got lo2 from ${GW_IP}`, 'published on 127.0.0.1: the host reaches it there');
    t.ok(await fails(tcp(out, HOST_OUT, 8080, 'no')), 'but outside -> host:8080 fails');
    t.ok(await fails(tcp(host, HOST_OUT, 8080, 'no')), 'the host -> its other address:8080 fails');
    t.ok(await fails(tcp(ctr, GW_IP, 8080, 'no')), 'the container -> its gateway:8080 fails');
    t.ok(await fails(tcp(ctr, '127.0.0.1', 8080, 'no')), 'the container -> 127.0.0.1:8080 through the host fails');
    t.equal(await routeLocalnet(host, GW), '1', 'route_localnet still on');

    // Published on the outside address only: no route_localnet needed.
    await firewall.publish([rule({ hostIp: HOST_OUT, ifName: GW })]);
    t.equal(await tcp(out, HOST_OUT, 8080, 'addr'), `ctr:80 got addr from ${OUT}`, 'published on one host address: outside reaches it');
    t.ok(await fails(tcp(host, '127.0.0.1', 8080, 'no')), 'the host does not through 127.0.0.1');
    t.ok(await fails(udp(out, HOST_OUT, 5353, 'no')), 'UDP no longer published: no answer');
    t.equal(await routeLocalnet(host, GW), '0', 'route_localnet off again');

    await firewall.removeAll();
    t.ok(await fails(tcp(out, HOST_OUT, 8080, 'no')), 'after removeAll nothing is published');
    t.equal(await save(host, backend), before, 'removeAll: iptables-save as before');
  });
}
