/**
 * The nested (container-in-VM) harness: the VM reaches a plain port on the
 * hypervisor; hand-made child ports (parent_name + tag, as the driver will
 * make them) carry a child's traffic, VLAN-tagged on the VM's eth0, ping and
 * TCP; what NB `up` says for a child port and when; and stop() leaves no
 * process, namespace or dir behind.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readlinkSync, statSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { createNetns, deleteNetns, ping, tcpEcho, tcpRoundTrip } from './netns.js';
import { startNestedLab, type NestedLab } from './nested-vm.js';
import { isAlive, run, stopAll, waitFor } from './process.js';

t.teardown(stopAll);

async function timed<T>(t: { comment(msg: string): void }, what: string, fn: () => Promise<T>): Promise<T> {
  const started = Date.now();
  const v = await fn();
  t.comment(`${what}: ${Date.now() - started} ms`);
  return v;
}

const netnsNames = async (): Promise<string[]> =>
  (await run('ip', ['netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter(Boolean);

/** The inode that identifies a network namespace, from its name or a process. */
const nsInode = (netns: string): number => statSync(`/var/run/netns/${netns}`).ino;
const pidNetInode = (pid: number): number => Number(/^net:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/ns/net`))?.[1]);

const linkMac = async (ns: string, dev: string): Promise<string> =>
  ((JSON.parse((await run('ip', ['-n', ns, '-j', 'link', 'show', 'dev', dev])).stdout) as { address?: string }[])[0]?.address ?? '');

const hex = randomBytes(4).toString('hex');
/** The plain port on the hypervisor that the VM and its children talk to. */
const PEER = { lsp: `hvpeer-${hex}`, mac: '0a:58:0a:fa:00:14', ip: '10.250.0.20', hostIf: `hvp-${hex}` };
/** c51 made the driver's way (lsp-add … PARENT TAG: tag_request); c52 the seed's way (the tag column, tag_request empty). */
const C51 = { lsp: `c51-${hex}`, tag: 51, mac: '0a:58:0a:fa:00:33', ip: '10.250.0.51', hostIf: `c51-${hex}` };
const C52 = { lsp: `c52-${hex}`, tag: 52, mac: '0a:58:0a:fa:00:34', ip: '10.250.0.52', hostIf: `c52-${hex}` };

let lab: NestedLab | undefined;
/** Namespaces this test makes (the peer, the children), by exact name. */
const testNamespaces: string[] = [];
let peerNs = '';

const nbUp = async (l: NestedLab, lsp: string): Promise<boolean> => (await l.nbctl('get', 'Logical_Switch_Port', lsp, 'up')).trim() === 'true';

/** One Port_Binding, as ovn-sbctl shows it; chassis by name rather than uuid. */
async function portBinding(l: NestedLab, lsp: string): Promise<{ chassis: string; up: string; tag: string; parentPort: string }> {
  const col = async (c: string): Promise<string> => (await l.sbctl('--bare', `--columns=${c}`, 'find', 'Port_Binding', `logical_port=${lsp}`)).trim();
  const chassisUuid = await col('chassis');
  const chassis = chassisUuid ? (await l.sbctl('--bare', '--columns=name', 'list', 'Chassis', chassisUuid)).trim() : '';
  return { chassis, up: await col('up'), tag: await col('tag'), parentPort: await col('parent_port') };
}

/**
 * A container inside the VM, as a driver there would plug it: a namespace of
 * its own holding eth0, the other end of the veth on breth0 as an access port
 * of the child's VLAN. Resolves when vswitchd has applied the port.
 */
async function plugChild(l: NestedLab, c: typeof C51): Promise<string> {
  const ns = await createNetns('ovnvc');
  testNamespaces.push(ns);
  const vm = l.vm;
  await run('ip', ['link', 'add', c.hostIf, 'netns', vm.netns, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns, 'address', c.mac]);
  await run('ip', ['-n', ns, 'addr', 'add', `${c.ip}/24`, 'dev', 'eth0']);
  await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
  // Userspace datapath: without this, TCP leaves with partial checksums (machine-notes).
  await run('ip', ['netns', 'exec', ns, 'ethtool', '-K', 'eth0', 'tx', 'off']);
  await run('ip', ['-n', vm.netns, 'link', 'set', c.hostIf, 'up']);
  await vm.vsctl('add-port', vm.bridge, c.hostIf, `tag=${c.tag}`);
  return ns;
}

t.test('the nested lab comes up', async (t) => {
  lab = await timed(t, 'startNestedLab', () => startNestedLab());
  const { hypervisor: hv, vm } = lab;
  t.match(hv.netns, /^ovnv-[0-9a-f]{8}-hv$/);
  t.match(vm.netns, /^ovnv-[0-9a-f]{8}-vm$/);
  t.match(vm.port, /^vm-[0-9a-f]{8}$/);
  t.match(vm.switchName, /^vms-[0-9a-f]{8}$/);
  for (const [daemon, pid] of Object.entries(hv.pids)) t.ok(isAlive(pid), `hypervisor: ${daemon} alive`);
  for (const [daemon, pid] of Object.entries(vm.pids)) t.ok(isAlive(pid), `vm: ${daemon} alive`);
  t.ok(isAlive(lab.northdPid), 'northd alive');
  t.equal(pidNetInode(hv.pids.vswitchd), nsInode(hv.netns), 'hypervisor vswitchd in its namespace');
  t.equal(pidNetInode(hv.pids.controller), nsInode(hv.netns), 'ovn-controller in the hypervisor namespace');
  t.equal(pidNetInode(vm.pids.vswitchd), nsInode(vm.netns), 'VM vswitchd in its namespace');

  // The hypervisor is the only chassis: nothing in the VM speaks to SB.
  t.same((await lab.sbctl('--bare', '--columns=name', 'list', 'Chassis')).split(/\s+/).filter(Boolean), [hv.systemId], 'one chassis, the hypervisor');
  t.equal((await lab.sbctl('--bare', '--columns=ip', 'find', 'Encap', 'type=geneve')).trim(), hv.encapIp, 'its geneve encap IP');
  t.equal((await lab.nbctl('get', 'Logical_Switch_Port', vm.port, 'addresses')).trim(), `["${vm.mac} ${vm.ip}"]`, 'VM port addresses');
  t.equal((await lab.nbctl('get', 'Logical_Switch_Port', vm.port, 'port_security')).trim(), `["${vm.mac} ${vm.ip}"]`, 'VM port port_security');
  t.ok(await nbUp(lab, vm.port), 'VM port up in NB');
  t.equal((await portBinding(lab, vm.port)).chassis, hv.systemId, 'VM port bound on the hypervisor');

  t.equal((await hv.vsctl('--if-exists', 'get', 'Interface', hv.vmIf, 'external_ids:iface-id')).trim().replace(/^"|"$/g, ''), vm.port, 'VM NIC on br-int with iface-id');
  t.equal((await hv.vsctl('get', 'Interface', hv.vmIf, 'external_ids:attached-mac')).trim().replace(/^"|"$/g, ''), vm.mac, 'and attached-mac');
  t.equal((await hv.vsctl('get', 'Bridge', 'br-int', 'fail_mode')).trim(), 'secure');
  t.equal((await vm.vsctl('list-ports', vm.bridge)).trim(), vm.nic, 'eth0 is the only port of breth0');
  t.equal((await vm.vsctl('get', 'Bridge', vm.bridge, 'fail_mode')).trim(), '[]', 'breth0 has no fail-mode');
  t.equal(await linkMac(vm.netns, vm.nic), vm.mac, "eth0 has the VM port's MAC");
  t.equal(await linkMac(vm.netns, vm.bridge), vm.mac, "breth0 has the VM port's MAC");
  t.match((await vm.exec('ip', ['-o', '-4', 'addr', 'show', 'dev', vm.bridge])).stdout, `inet ${vm.ip}/24`, 'VM address on breth0');
});

t.test('(1) the VM reaches a plain port on the hypervisor', async (t) => {
  if (!lab) return t.fail('no lab');
  const l = lab;
  const hv = l.hypervisor;
  await l.nbctl('lsp-add', l.vm.switchName, PEER.lsp, '--', 'lsp-set-addresses', PEER.lsp, `${PEER.mac} ${PEER.ip}`);
  peerNs = await createNetns('ovnvp');
  testNamespaces.push(peerNs);
  await run('ip', ['link', 'add', PEER.hostIf, 'netns', hv.netns, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', peerNs, 'address', PEER.mac]);
  await run('ip', ['-n', peerNs, 'addr', 'add', `${PEER.ip}/24`, 'dev', 'eth0']);
  await run('ip', ['-n', peerNs, 'link', 'set', 'eth0', 'up']);
  await run('ip', ['netns', 'exec', peerNs, 'ethtool', '-K', 'eth0', 'tx', 'off']);
  await run('ip', ['-n', hv.netns, 'link', 'set', PEER.hostIf, 'up']);
  await hv.vsctl('add-port', 'br-int', PEER.hostIf, '--', 'set', 'Interface', PEER.hostIf, `external_ids:iface-id=${PEER.lsp}`);
  await timed(t, 'peer port up', () => l.nbctl('wait-until', 'Logical_Switch_Port', PEER.lsp, 'up=true'));

  await timed(t, 'first ping VM -> peer', () => waitFor(() => ping(l.vm.netns, PEER.ip), { what: 'ping VM -> peer', timeoutMs: 10_000, intervalMs: 100 }));
  // Each reply once: the kernel's copy of frames on eth0 is dropped (nested-vm.ts).
  const { stdout } = await l.vm.exec('ping', ['-c3', '-i0.2', '-W2', PEER.ip]);
  t.match(stdout, /3 received/, 'ping VM -> peer, 3 of 3');
  t.notMatch(stdout, /DUP/, 'no duplicate replies');
  t.ok(await ping(peerNs, l.vm.ip), 'ping peer -> VM');
  const echo = await tcpEcho(peerNs, PEER.ip, 7071);
  try {
    t.equal(await tcpRoundTrip(l.vm.netns, PEER.ip, 7071, 'hello-from-vm'), 'hello-from-vm', 'TCP echo VM -> peer');
  } finally {
    await echo.stop();
  }
});

t.test('(2, 3) child ports of the VM port', async (t) => {
  if (!lab) return t.fail('no lab');
  const l = lab;
  const { hypervisor: hv, vm } = l;

  // c51 the driver's way: lsp-add SWITCH PORT PARENT TAG fills tag_request,
  // and ovn-northd copies it to tag.
  const createdAt = new Map<string, number>();
  createdAt.set(C51.lsp, Date.now());
  await l.nbctl('lsp-add', vm.switchName, C51.lsp, vm.port, String(C51.tag));
  await l.nbctl('lsp-set-addresses', C51.lsp, `${C51.mac} ${C51.ip}`, '--', 'lsp-set-port-security', C51.lsp, `${C51.mac} ${C51.ip}`);
  // c52 the seed's way: parent_name and the tag column written directly.
  createdAt.set(C52.lsp, Date.now());
  await l.nbctl('lsp-add', vm.switchName, C52.lsp, '--', 'lsp-set-addresses', C52.lsp, `${C52.mac} ${C52.ip}`, '--', 'lsp-set-port-security', C52.lsp, `${C52.mac} ${C52.ip}`);
  await l.nbctl('set', 'Logical_Switch_Port', C52.lsp, `parent_name=${vm.port}`, `tag=${C52.tag}`);

  // (3) Nothing is plugged inside the VM yet (breth0 holds eth0 only).
  t.equal((await vm.vsctl('list-ports', vm.bridge)).trim(), vm.nic, 'no child plugged in the VM yet');
  for (const c of [C51, C52]) {
    await waitFor(() => nbUp(l, c.lsp), { what: `${c.lsp} up in NB`, timeoutMs: 10_000, intervalMs: 10 });
    t.comment(`${c.lsp}: NB up=true ${Date.now() - createdAt.get(c.lsp)!} ms after lsp-add (at most; polled), with nothing plugged in the VM`);
  }
  // One more northd round, so that tag is as northd leaves it.
  await l.nbctl('--wait=hv', 'sync');
  t.equal((await vm.vsctl('list-ports', vm.bridge)).trim(), vm.nic, 'still nothing plugged in the VM');
  for (const c of [C51, C52]) {
    const pb = await portBinding(l, c.lsp);
    t.comment(`${c.lsp} before plugging: Port_Binding chassis=${pb.chassis} up=${pb.up} tag=${pb.tag} parent_port=${pb.parentPort}`);
    t.same(pb, { chassis: hv.systemId, up: 'true', tag: String(c.tag), parentPort: vm.port }, `${c.lsp}: bound on the hypervisor, up, before any plug`);
    t.ok(await nbUp(l, c.lsp), `${c.lsp}: NB up=true before any plug`);
  }
  t.equal((await l.nbctl('get', 'Logical_Switch_Port', C51.lsp, 'tag_request')).trim(), '51', 'c51: tag_request from lsp-add');
  t.equal((await l.nbctl('get', 'Logical_Switch_Port', C51.lsp, 'tag')).trim(), '51', 'c51: northd copied tag_request to tag');
  t.equal((await l.nbctl('get', 'Logical_Switch_Port', C52.lsp, 'tag_request')).trim(), '[]', 'c52: tag_request empty');
  t.equal((await l.nbctl('get', 'Logical_Switch_Port', C52.lsp, 'tag')).trim(), '52', 'c52: northd keeps tag as written');
  // Also through a full recompute, not only its incremental path.
  await run('ovn-appctl', ['-t', path.join(l.dir, 'northd.ctl'), 'inc-engine/recompute']);
  await l.nbctl('--wait=hv', 'sync');
  t.equal((await l.nbctl('get', 'Logical_Switch_Port', C52.lsp, 'tag')).trim(), '52', 'c52: tag as written after a northd recompute');
  t.equal((await portBinding(l, C52.lsp)).tag, '52', 'c52: Port_Binding.tag after a northd recompute');

  // (2) Plug c51 in the VM. up was true before, so plugging cannot move it;
  // the first ping that passes is the readiness a driver can observe.
  const upBeforePlug = await nbUp(l, C51.lsp);
  const c51Ns = await plugChild(l, C51);
  const pluggedAt = Date.now();
  const upAfterPlug = await nbUp(l, C51.lsp);
  t.comment(`${C51.lsp}: NB up=${upBeforePlug} just before the plug, up=${upAfterPlug} at the first read after it (${Date.now() - pluggedAt} ms): 0 ms from plug to up`);
  t.ok(upBeforePlug && upAfterPlug, 'c51 up before and after the plug alike');
  await waitFor(() => ping(c51Ns, PEER.ip), { what: 'ping c51 -> peer', timeoutMs: 10_000, intervalMs: 50 });
  t.comment(`${C51.lsp}: first ping to the peer passed ${Date.now() - pluggedAt} ms after the plug`);
  const { stdout } = await run('ip', ['netns', 'exec', c51Ns, 'ping', '-c3', '-i0.2', '-W2', PEER.ip]);
  t.match(stdout, /3 received/, 'ping c51 -> peer, 3 of 3');
  t.notMatch(stdout, /DUP/, 'no duplicate replies');
  t.ok(await ping(peerNs, C51.ip), 'ping peer -> c51');
  const echo = await tcpEcho(peerNs, PEER.ip, 7072);
  try {
    t.equal(await tcpRoundTrip(c51Ns, PEER.ip, 7072, 'hello-from-c51'), 'hello-from-c51', 'TCP echo c51 -> peer');
  } finally {
    await echo.stop();
  }
  // The child's frames crossed the VM's NIC with VLAN 51: the VM's bridge
  // learnt c51's MAC on the access port and the peer's on eth0 in VLAN 51.
  const fdb = (await vm.exec('ovs-appctl', ['-t', path.join(vm.dir, 'vswitchd.ctl'), 'fdb/show', vm.bridge])).stdout;
  const ofport = async (ifName: string): Promise<string> => (await vm.vsctl('get', 'Interface', ifName, 'ofport')).trim();
  t.match(fdb, new RegExp(`^\\s*${await ofport(vm.nic)}\\s+${C51.tag}\\s+${PEER.mac}`, 'm'), 'peer MAC learnt on eth0, VLAN 51');
  t.match(fdb, new RegExp(`^\\s*${await ofport(C51.hostIf)}\\s+${C51.tag}\\s+${C51.mac}`, 'm'), 'c51 MAC learnt on its access port, VLAN 51');

  // The seed's c52 (tag column, no tag_request) carries traffic as well.
  const c52Ns = await plugChild(l, C52);
  await waitFor(() => ping(c52Ns, PEER.ip), { what: 'ping c52 -> peer', timeoutMs: 10_000, intervalMs: 50 });
  t.pass('ping c52 -> peer');
  // VLANs isolate the children inside the VM: c51's access port never sees
  // c52's frames, so only OVN can join them (same logical switch: it does).
  t.ok(await ping(c51Ns, C52.ip), 'ping c51 -> c52 through OVN');

  // What a child's `up` does follow: the parent's binding. Unbinding the VM's
  // NIC on the hypervisor takes the children down with it; rebinding brings them back.
  await hv.vsctl('remove', 'Interface', hv.vmIf, 'external_ids', 'iface-id');
  await timed(t, 'children down after the parent is unbound', () =>
    waitFor(async () => !(await nbUp(l, vm.port)) && !(await nbUp(l, C51.lsp)) && !(await nbUp(l, C52.lsp)), {
      what: 'VM port and children down',
      timeoutMs: 10_000,
      intervalMs: 20,
    }),
  );
  const unbound = await portBinding(l, C51.lsp);
  t.comment(`${C51.lsp} with its parent unbound: Port_Binding chassis=${unbound.chassis || '(none)'} up=${unbound.up} tag=${unbound.tag} parent_port=${unbound.parentPort}`);
  t.equal(unbound.chassis, '', 'c51 released with its parent');
  t.equal(unbound.up, 'false', 'c51 Port_Binding.up false with its parent unbound');
  await hv.vsctl('set', 'Interface', hv.vmIf, `external_ids:iface-id=${vm.port}`);
  await timed(t, 'children up again after the parent is rebound', () =>
    waitFor(async () => (await nbUp(l, vm.port)) && (await nbUp(l, C51.lsp)) && (await nbUp(l, C52.lsp)), {
      what: 'VM port and children up',
      timeoutMs: 10_000,
      intervalMs: 20,
    }),
  );
  await waitFor(() => ping(c51Ns, PEER.ip), { what: 'ping c51 -> peer after rebinding', timeoutMs: 10_000, intervalMs: 50 });
  t.pass('ping c51 -> peer after rebinding');
});

t.test('(4) stop leaves nothing behind', async (t) => {
  if (!lab) return t.fail('no lab');
  const l = lab;
  lab = undefined;
  const { hypervisor: hv, vm } = l;
  const pids = [l.northdPid, l.nb.pid, l.sb.pid, ...Object.values(hv.pids), ...Object.values(vm.pids)];
  const labNamespaces = [hv.netns, vm.netns];
  const dirs = [hv.dir, vm.dir, path.dirname(hv.dir), l.nb.dir, l.sb.dir];
  await timed(t, 'NestedLab.stop', () => l.stop());
  const mine = testNamespaces.splice(0);
  for (const ns of mine) await deleteNetns(ns);
  t.same(pids.filter(isAlive), [], 'every daemon gone');
  const names = await netnsNames();
  t.same(names.filter((n) => labNamespaces.includes(n)), [], 'hypervisor and VM namespaces gone');
  t.same(names.filter((n) => mine.includes(n)), [], "the test's peer and child namespaces gone");
  t.same(dirs.filter((d) => existsSync(d)), [], 'every dir removed');
  await l.stop();
  t.pass('stop is idempotent');
});

// Whatever failed above, no namespace of this test stays.
t.teardown(async () => {
  for (const ns of testNamespaces.splice(0)) await deleteNetns(ns);
});
