/**
 * bench/host-ops: what one host-side step of an endpoint costs: veth
 * create, offload off and delete (ip, ethtool), and OVS port attach,
 * re-attach, list and detach (ovs-vsctl against a single-chassis stack
 * whose ovs-vswitchd confirms each write). Needs root.
 *
 *   npm run bench:host-ops [-- --rounds 10]
 */
import { randomBytes } from 'node:crypto';
import { createRunner } from '../src/host/exec.js';
import { Links } from '../src/host/links.js';
import { Ovs, type PortAttachment } from '../src/host/ovs.js';
import { startOvnStack } from '../test/harness/ovn-stack.js';
import { median, time } from './stats.js';

const roundsAt = process.argv.indexOf('--rounds');
const ROUNDS = roundsAt >= 0 ? Number(process.argv[roundsAt + 1]) : 10;

const runner = createRunner();
const links = new Links(runner);
/** 'hb' + 10 hex: unique, and obviously a bench leftover if one survives. */
const randomName = (): string => `hb${randomBytes(5).toString('hex')}`;
const randomMac = (): string => `02:${[...randomBytes(5)].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;

const made: string[] = [];
const samples = new Map<string, number[]>();
async function measure(label: string, fn: () => Promise<unknown>): Promise<void> {
  const ms = await time(fn);
  samples.set(label, [...(samples.get(label) ?? []), ms]);
}

async function linkRound(): Promise<void> {
  const [a, b, c, d] = [randomName(), randomName(), randomName(), randomName()];
  made.push(a, c);
  await measure('ip link add (veth pair, one call)', () =>
    runner.run('ip', ['link', 'add', 'name', a, 'mtu', '1442', 'type', 'veth', 'peer', 'name', b, 'mtu', '1442', 'address', randomMac()]),
  );
  await measure('Links.createVeth (add + set up)', () => links.createVeth(c, d, { mtu: 1442, peerMac: randomMac() }));
  await measure('ethtool -K tx off', () => links.disableTxChecksumOffload(d));
  await measure('ip link del', () => links.deleteLink(a));
  await links.deleteLink(c);
}

async function ovsRound(ovs: Ovs): Promise<void> {
  const [host, peer] = [randomName(), randomName()];
  made.push(host);
  await links.createVeth(host, peer, { mtu: 1442, peerMac: randomMac() });
  const port: PortAttachment = { bridge: 'br-int', port: host, ifaceId: `lsp-${host}`, attachedMac: randomMac(), externalIds: { 'ovn-docker:endpoint': host } };
  await measure('Ovs.attachPort (add-port + external_ids, waits for vswitchd)', () => ovs.attachPort(port));
  await measure('Ovs.attachPort again (no change)', () => ovs.attachPort(port));
  await measure('Ovs.listPorts', () => ovs.listPorts('br-int'));
  await measure('Ovs.detachPort', () => ovs.detachPort('br-int', host));
  await links.deleteLink(host);
}

try {
  // Links first, with no OVS running, as a host without ports would see them.
  for (let i = 0; i < ROUNDS; i++) await linkRound();
  const stack = await startOvnStack();
  try {
    const ovs = new Ovs({ runner, db: stack.ovsRemote, timeoutSec: 10 });
    for (let i = 0; i < ROUNDS; i++) await ovsRound(ovs);
  } finally {
    await stack.stop();
  }
} finally {
  for (const name of made) await links.deleteLink(name).catch(() => undefined);
}

console.log('| step | median | min | max |');
console.log('|---|---:|---:|---:|');
for (const [label, xs] of samples) {
  console.log(`| ${label} | ${median(xs).toFixed(1)} ms | ${Math.min(...xs).toFixed(1)} ms | ${Math.max(...xs).toFixed(1)} ms |`);
}
console.log(`\n${ROUNDS} rounds, node ${process.version}.`);
