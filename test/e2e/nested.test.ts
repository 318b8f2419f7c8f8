/**
 * Containers inside a VM (nested mode) next to containers on the
 * hypervisor (overlay mode), with a real engine and driver on each side
 * (harness/nested-vm.ts): the VM's containers are child ports of the VM's
 * port with VLAN tags of their own, and share one network with the
 * hypervisor's containers. Shows: reachability both ways (ping and TCP);
 * isolation of a second network; tags matching the VM bridge's access
 * ports; names across VM and hypervisor; connect/disconnect; ten concurrent
 * starts; traffic with the VM's driver stopped, the start-up sweep of a
 * leftover on breth0, and a start after its restart; nothing left after
 * removal.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { hostIfName, peerIfName } from '../../src/host/names.js';
import { Keys, OWNER } from '../../src/ovn/keys.js';
import { ensureBusyboxImage, startDockerEngine, type DockerEngine } from '../harness/docker.js';
import { startDriverProcess, type DriverProcess } from '../harness/driver-process.js';
import { startNestedLab, type NestedLab } from '../harness/nested-vm.js';
import { makePluginDirs, type PluginDirs } from '../harness/plugin-dirs.js';
import { waitFor } from '../harness/process.js';

const NAME = 'openvswitch';
const SUBNET = '10.70.0.0/24';
const OTHER = '10.71.0.0/24';
const IMAGE = 'busybox:local';

interface Side {
  label: 'hypervisor' | 'vm';
  dirs: PluginDirs;
  engine: DockerEngine;
  driver: DriverProcess;
}

let lab: NestedLab | undefined;
const sides: Side[] = [];

t.teardown(async () => {
  for (const side of sides) {
    const ids = (await side.engine.docker('ps', '-aq').catch(() => ({ stdout: '' }))).stdout.split(/\s+/).filter(Boolean);
    if (ids.length) await side.engine.docker('rm', '-f', ...ids).catch(() => undefined);
    for (const net of ['shared', 'other']) await side.engine.docker('network', 'rm', net).catch(() => undefined);
    await side.engine.stop();
    await side.driver.stop();
    await side.dirs.remove();
  }
  await lab?.stop();
});

t.test('containers in a VM on OVN (nested mode) beside containers on the hypervisor', async (t) => {
  lab = await startNestedLab();
  const { hypervisor, vm } = lab;
  for (const [label, netns, ovsDb, args] of [
    ['hypervisor', hypervisor.netns, hypervisor.ovsRemote, []],
    // Found by the MAC of the VM's NIC; breth0 is the default bridge in nested mode.
    ['vm', vm.netns, vm.ovsRemote, ['--vm-nic', vm.nic]],
  ] as const) {
    const dirs = await makePluginDirs(NAME);
    const engine = await startDockerEngine({ engine: '20.10', pluginDir: dirs.pluginDir, netns });
    const driver = await startDriverProcess({
      name: NAME,
      pluginDir: dirs.socketDir,
      nbRemote: lab.nbRemote,
      ovsDb,
      logFile: path.join(dirs.dir, 'driver.log'),
      netns,
      extraArgs: [...args, '--docker-host', engine.host],
    });
    await ensureBusyboxImage(engine);
    sides.push({ label, dirs, engine, driver });
  }
  const [hv, inVm] = sides as [Side, Side];
  const docker = (side: Side, ...args: string[]) => side.engine.docker(...args).then((r) => r.stdout.trim());
  const exec = (side: Side, container: string, ...args: string[]) => docker(side, 'exec', container, ...args);
  const ipOf = (side: Side, container: string, net = 'shared') =>
    docker(side, 'inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").IPAddress}}`, container);
  const ping = (side: Side, container: string, ip: string) => exec(side, container, 'ping', '-c1', '-W2', ip);
  const vsctlVm = (...args: string[]) => vm.vsctl(...args).then((s) => s.trim());

  /** The VM's child ports in NB: name -> tag. */
  const children = async () => {
    const out = await lab!.nbctl('--bare', '--columns=name,tag', 'find', 'Logical_Switch_Port', `parent_name=${vm.port}`);
    const words = out.split(/\s+/).filter(Boolean);
    const map = new Map<string, number>();
    for (let i = 0; i + 1 < words.length; i += 2) map.set(words[i]!, Number(words[i + 1]));
    return map;
  };
  /** breth0's ports that carry an iface-id (the containers'): iface-id -> the port's VLAN tag. */
  const bridgeTags = async () => {
    const map = new Map<string, number>();
    for (const port of (await vsctlVm('list-ports', vm.bridge)).split('\n').filter(Boolean)) {
      const ifaceId = (await vsctlVm('--if-exists', 'get', 'Interface', port, 'external_ids:iface-id')).replace(/"/g, '');
      if (ifaceId) map.set(ifaceId, Number(await vsctlVm('get', 'Port', port, 'tag')));
    }
    return map;
  };
  /**
   * NB's children and breth0's tags, read when they agree: a refill makes its
   * warm ports in NB in one transaction and plugs them on breth0 a few at a
   * time after, so a read in between sees NB ahead. Never agreeing is a failure.
   */
  const agreed = (what: string) =>
    waitFor(
      async () => {
        const nb = await children();
        const ovs = await bridgeTags();
        return nb.size === ovs.size && [...nb].every(([name, tag]) => ovs.get(name) === tag) ? { nb, ovs } : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 250, what: `NB's children of ${vm.port} and breth0's tags to agree ${what}` },
    );

  // One network: a pool of the driver's IPAM, so the VM's network and the hypervisor's are one switch.
  for (const side of sides) await docker(side, 'network', 'create', '-d', NAME, '--ipam-driver', NAME, '--subnet', SUBNET, 'shared');
  t.match(
    await docker(inVm, 'network', 'create', '-d', NAME, '--subnet', OTHER, '-o', 'ovn.gateway=host', 'refused').catch((e: Error) => e.message),
    /ovn\.gateway=host is not available in nested mode/,
    'the VM cannot be a gateway: refused with the reason',
  );

  await docker(inVm, 'run', '-d', '--net', 'shared', '--name', 'v1', IMAGE, 'sleep', '3600');
  await docker(inVm, 'run', '-d', '--net', 'shared', '--name', 'v2', IMAGE, 'sleep', '3600');
  await docker(hv, 'run', '-d', '--net', 'shared', '--name', 'h1', IMAGE, 'sleep', '3600');
  const [v1, v2, h1] = [await ipOf(inVm, 'v1'), await ipOf(inVm, 'v2'), await ipOf(hv, 'h1')];
  t.equal(new Set([v1, v2, h1]).size, 3, `three distinct addresses (${v1} ${v2} ${h1})`);
  t.match(await ping(inVm, 'v1', v2), /1 packets received/, 'two containers in the VM reach each other');
  t.match(await ping(inVm, 'v1', h1), /1 packets received/, 'a container in the VM reaches one on the hypervisor');
  t.match(await ping(hv, 'h1', v2), /1 packets received/, 'and the other way');

  // TCP both ways (the VM's bridge is a userspace datapath too: checksum offload must be off on the container side).
  const tcp = async (from: Side, fromName: string, to: Side, toName: string, ip: string, port: number, text: string) => {
    await docker(to, 'exec', '-d', toName, 'sh', '-c', `sleep 600 | nc -l -p ${port} > /tmp/got-${port}`);
    await waitFor(async () => (await exec(to, toName, 'netstat', '-ltn')).includes(`:${port}`) || undefined, {
      timeoutMs: 10_000,
      what: `nc listening in ${toName}`,
    });
    await exec(from, fromName, 'sh', '-c', `echo ${text} | nc -w 5 ${ip} ${port}`);
    return waitFor(async () => (await exec(to, toName, 'cat', `/tmp/got-${port}`)).includes(text) || undefined, {
      timeoutMs: 10_000,
      what: `TCP payload in ${toName}`,
    });
  };
  t.ok(await tcp(inVm, 'v1', hv, 'h1', h1, 7070, 'from-the-vm'), 'TCP from a container in the VM to one on the hypervisor');
  t.ok(await tcp(hv, 'h1', inVm, 'v2', v2, 7071, 'from-the-hypervisor'), 'TCP from the hypervisor to a container in the VM');

  // Names across the VM and the hypervisor: OVN answers at the gateway address, for child ports too.
  const resolve = (side: Side, container: string, name: string) =>
    waitFor(() => exec(side, container, 'nslookup', name, '10.70.0.1').catch(() => undefined), {
      timeoutMs: 20_000,
      what: `${name} resolved in ${container}`,
    });
  t.match(await resolve(inVm, 'v1', 'h1'), new RegExp(`Address:? *${h1.replace(/\./g, '\\.')}`), "a container in the VM resolves the hypervisor's container by name");
  t.match(await resolve(hv, 'h1', 'v2'), new RegExp(`Address:? *${v2.replace(/\./g, '\\.')}`), "and the hypervisor's resolves the VM's");

  // A second network in the VM: its own switch, no path to the first, even at L2.
  await docker(inVm, 'network', 'create', '-d', NAME, '--subnet', OTHER, 'other');
  await docker(inVm, 'run', '-d', '--net', 'other', '--cap-add', 'NET_ADMIN', '--name', 'o1', IMAGE, 'sleep', '3600');
  t.match(await ipOf(inVm, 'o1', 'other'), /^10\.71\.0\.\d+$/, 'a container on the second network');
  // On-link for the first subnet: o1 asks for v1 by ARP on its own segment, which only the second network's switch carries.
  await exec(inVm, 'o1', 'ip', 'route', 'add', SUBNET, 'dev', 'eth0');
  await t.rejects(ping(inVm, 'o1', v1), 'a container on the second network cannot reach the first');

  // network connect / disconnect in the VM: o2 gets a child port on the shared network with a tag of its own.
  // (Warm ports come and go meanwhile: the checks name o2's port, and the invariants, not counts.)
  await docker(inVm, 'run', '-d', '--net', 'other', '--name', 'o2', IMAGE, 'sleep', '3600');
  await docker(inVm, 'network', 'connect', 'shared', 'o2');
  const o2Shared = await ipOf(inVm, 'o2');
  t.match(await ping(inVm, 'o2', h1), /1 packets received/, 'after connect, o2 reaches the hypervisor over the shared network');
  const o2Port = (await lab.nbctl('--bare', '--columns=name', 'find', 'Logical_Switch_Port', `parent_name=${vm.port}`, `addresses{>=}"${await docker(inVm, 'inspect', '-f', '{{(index .NetworkSettings.Networks "shared").MacAddress}}', 'o2')} ${o2Shared}"`)).trim();
  t.ok(o2Port, `o2's port on the shared network is a child of the VM's port (${o2Port})`);
  const connected = await children();
  t.equal(new Set(connected.values()).size, connected.size, 'with a tag no other child has');
  t.equal((await bridgeTags()).get(o2Port), connected.get(o2Port), "its veth is an access port of that tag on breth0");
  await docker(inVm, 'network', 'disconnect', 'shared', 'o2');
  t.notMatch(await exec(inVm, 'o2', 'ip', '-o', '-4', 'addr'), o2Shared, 'disconnect took the interface away');
  const { nb: disconnected, ovs: afterDisconnect } = await agreed('after the disconnect');
  t.equal(new Set(disconnected.values()).size, disconnected.size, 'tags still distinct');
  t.same(afterDisconnect, disconnected, "breth0's access ports still match NB");
  await t.rejects(ping(hv, 'h1', o2Shared), 'o2 is no longer reachable at its shared address');

  // Tags: every child of the VM's port has its own, and breth0 tags its veth with it.
  const { nb, ovs } = await agreed('with the three containers');
  t.ok(nb.size >= 3, `the VM's containers' ports are children of ${vm.port} (${nb.size} with warm ports)`);
  t.equal(new Set(nb.values()).size, nb.size, `distinct tags (${[...nb.values()].join(' ')})`);
  t.ok([...nb.values()].every((tag) => tag >= 1 && tag <= 4095), 'all in 1-4095');
  t.same(ovs, nb, "breth0's access ports carry the same tags as their ports in NB");
  const [oneChild, oneTag] = [...nb.entries()][0]!;
  t.equal((await lab.nbctl('lsp-get-parent', oneChild)).trim(), vm.port, 'ovn-nbctl lsp-get-parent shows the VM port');
  t.equal(Number((await lab.nbctl('lsp-get-tag', oneChild)).trim()), oneTag, 'ovn-nbctl lsp-get-tag shows the tag');

  // Ten starts at once in the VM.
  const burst = Array.from({ length: 10 }, (_, i) => `burst-${i}`);
  await Promise.all(burst.map((n) => docker(inVm, 'run', '-d', '--net', 'shared', '--name', n, IMAGE, 'sleep', '3600')));
  const burstIps = await Promise.all(burst.map((n) => ipOf(inVm, n)));
  t.equal(new Set([...burstIps, v1, v2, h1]).size, 13, `ten more distinct addresses (${burstIps.join(' ')})`);
  const { nb: after, ovs: afterBurst } = await agreed('after ten starts at once');
  t.equal(new Set(after.values()).size, after.size, `still distinct tags, ${after.size} children`);
  t.same(afterBurst, after, 'and the same on breth0');
  for (const [i, n] of burst.entries()) {
    t.match(await ping(inVm, n, h1), /1 packets received/, `${n} (${burstIps[i]}) reaches the hypervisor`);
  }

  // The VM's driver stopped: traffic goes on; after its restart a new container works.
  await inVm.driver.kill();
  t.match(await ping(inVm, 'v1', h1), /1 packets received/, "traffic with the VM's driver down");
  // What a crash between plugging and NB's delete leaves: a port of ours on breth0 whose OVN port is gone.
  const ghost = randomBytes(32).toString('hex');
  await vm.exec('ip', ['link', 'add', hostIfName(ghost), 'type', 'veth', 'peer', 'name', peerIfName(ghost)]);
  await vsctlVm(
    'add-port', vm.bridge, hostIfName(ghost), 'tag=4000', '--', 'set', 'Interface', hostIfName(ghost),
    `external_ids:iface-id=${ghost}`, `external_ids:"${Keys.owner}"=${OWNER}`,
  );
  await inVm.driver.start();
  t.notOk((await vsctlVm('list-ports', vm.bridge)).split('\n').includes(hostIfName(ghost)), 'the restarted driver swept the leftover port from breth0');
  t.equal((await vm.exec('ip', ['-o', 'link', 'show'])).stdout.includes(hostIfName(ghost)), false, 'and its veth');
  await docker(inVm, 'run', '-d', '--net', 'shared', '--name', 'late', IMAGE, 'sleep', '3600');
  t.match(await ping(inVm, 'late', h1), /1 packets received/, "a container started after the driver's restart reaches the hypervisor");
  t.match(await ping(hv, 'h1', await ipOf(inVm, 'late')), /1 packets received/, 'and is reached from it');

  // Removal leaves nothing of the VM's containers.
  const vmContainers = (await docker(inVm, 'ps', '-aq')).split(/\s+/).filter(Boolean);
  await docker(inVm, 'rm', '-f', ...vmContainers);
  for (const net of ['shared', 'other']) await docker(inVm, 'network', 'rm', net);
  t.same([...(await children()).keys()], [], `no child port of ${vm.port} left in NB`);
  t.same((await vsctlVm('list-ports', vm.bridge)).split('\n').filter(Boolean), [vm.nic], `${vm.bridge} holds only the NIC`);
  const veths = (await vm.exec('ip', ['-o', 'link', 'show', 'type', 'veth'])).stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split(':')[1]!.trim().split('@')[0]);
  t.same(veths, [vm.nic], 'no veth left in the VM but its NIC');
});
