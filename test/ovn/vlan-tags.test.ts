/**
 * Nested mode on a bare NB ovsdb-server: container ports as children of a
 * VM's port (src/ovn/vlan-tags.ts, vm-port.ts). Tags are unique among one
 * parent's children even when two writers race, free again when a port
 * goes, and never taken from a child someone else made; the VM's port is
 * found by name or MAC, and a port that cannot be a parent is refused.
 */
import t from 'tap';
import { DomainError } from '../../src/errors.js';
import { OvnPools } from '../../src/ovn/pools.js';
import { portSetName } from '../../src/ovn/port-sets.js';
import { OvnWarmPorts } from '../../src/ovn/warm-ports.js';
import { findVmPort } from '../../src/ovn/vm-port.js';
import { MAX_TAG } from '../../src/ovn/vlan-tags.js';
import { useNbHosts, type NbHost } from '../harness/nb-hosts.js';
import { networkSpec } from './model-fixture.js';
import { rowNamed, select, until, wireMap, wireSet } from './nb-reads.js';

const [a, b] = (await useNbHosts(t, ['vm-a', 'vm-a'], 'nested')) as [NbHost, NbHost];
const VM_MAC = '0a:58:0a:fa:00:0a';

/** A switch of VMs with the VM ports given (name → MAC), made as an operator (or a cloud) would: no keys of ours. */
async function vmSwitch(name: string, ports: Record<string, string>, extra: Record<string, Record<string, unknown>> = {}): Promise<void> {
  await a.nb.transaction((tx) => {
    const uuids = Object.entries(ports).map(([port, mac]) =>
      tx.insert('Logical_Switch_Port', { name: port, addresses: [`${mac} 10.250.0.${10 + Object.keys(ports).indexOf(port)}`], ...(extra[port] ?? {}) }),
    );
    tx.insert('Logical_Switch', { name, ports: uuids });
  });
}

async function tagOf(port: string): Promise<{ parent: unknown[]; tag: unknown[]; options: Map<string, string> }> {
  const row = await rowNamed(a.nb, 'Logical_Switch_Port', port, ['parent_name', 'tag', 'options']);
  return { parent: wireSet(row?.parent_name), tag: wireSet(row?.tag), options: wireMap(row?.options) };
}

await vmSwitch('vms', { vm1: VM_MAC, vm2: '0a:58:0a:fa:00:0b' });
await a.networks.ensureNetwork(networkSpec(a, 61, 'net-61'));
await until(b.nb, () => b.networks.findNetwork('net-61'), 'host B sees net-61');

const endpoint = (h: NbHost, id: string, ip: string, parent = 'vm1') =>
  h.networks.ensureEndpoint({ networkId: 'net-61', endpointId: id, ipv4: `10.61.0.${ip}/24`, chassis: 'vm1', parent }).then((r) => r.endpoint);

t.test('ten endpoints created at once by two writers get ten distinct tags', async (t) => {
  const ids = Array.from({ length: 10 }, (_, i) => `ep-${i}`);
  const records = await Promise.all(ids.map((id, i) => endpoint(i % 2 ? b : a, id, String(10 + i))));
  const tags = records.map((r) => r.tag);
  t.same(
    [...tags].sort((x, y) => x! - y!),
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    `tags 1-10, each once (${tags.join(' ')})`,
  );
  for (const [i, id] of ids.entries()) {
    const row = await tagOf(id);
    t.same(row.parent, ['vm1'], `${id}: parent_name is the VM's port`);
    t.same(row.tag, [tags[i]], `${id}: tag in NB as returned`);
    t.notOk(row.options.has('requested-chassis'), `${id}: not pinned to a chassis (bound wherever the VM's port is)`);
  }
  const again = await endpoint(a, 'ep-4', '14');
  t.equal(again.tag, tags[4], 'a retried CreateEndpoint finds its port and its tag');
});

t.test('a tag is free again when its port goes; tags of children made by others are never taken', async (t) => {
  const freed = a.networks.findEndpoint('ep-2')!.tag!;
  await a.networks.deleteEndpoint('ep-2');
  t.equal((await endpoint(a, 'ep-20', '30')).tag, freed, `the next endpoint gets the freed tag ${freed}`);

  // A child someone else made, asking ovn-northd for tag 11 (tag_request) rather than writing tag.
  // The VMs' switch is not the driver's: its replica does not have it (keys.ts nbScope).
  await a.nb.transaction((tx) => {
    const port = tx.insert('Logical_Switch_Port', { name: 'foreign-child', parent_name: 'vm1', tag_request: 11, addresses: ['0a:00:00:00:00:11'] });
    tx.mutate('Logical_Switch', [['name', '==', 'vms']], [['ports', 'insert', [port]]]);
  });
  await until(a.nb, () => a.nb.replica.findOne('Logical_Switch_Port', 'name', 'foreign-child'));
  t.equal((await endpoint(a, 'ep-21', '31')).tag, 12, 'tag 11 (requested by another child) is skipped');
  t.equal((await endpoint(a, 'ep-22', '32', 'vm2')).tag, 1, "another VM's children count tags of their own");
});

t.test('warm ports of a VM are children with tags of their own', async (t) => {
  const warm = new OvnWarmPorts(a.nb, new OvnPools(a.nb), 'vm1');
  const port = (await warm.create(portSetName('net-61'), 'vm1', 1, 0))[0];
  t.ok(port, 'a warm port was made');
  const row = await tagOf(port!.name);
  t.same(row.parent, ['vm1'], "its parent is the VM's port");
  t.equal(port!.tag, 13, 'the lowest free tag');
  t.same(row.tag, [13], 'written in NB');
  t.notOk(row.options.has('requested-chassis'), 'not pinned to a chassis');
});

t.test('an overlay endpoint has no parent and is pinned to its chassis', async (t) => {
  const record = await a.networks
    .ensureEndpoint({ networkId: 'net-61', endpointId: 'overlay-ep', ipv4: '10.61.0.60/24', chassis: 'host-x' })
    .then((r) => r.endpoint);
  t.equal(record.tag, undefined);
  const row = await tagOf('overlay-ep');
  t.same(row.parent, []);
  t.same(row.tag, []);
  t.equal(row.options.get('requested-chassis'), 'host-x');
});

t.test('a VM with every tag in use: refused, nothing written', async (t) => {
  await vmSwitch('full', { vm3: '0a:58:0a:fa:00:0c' });
  await a.nb.transaction((tx) => {
    const ports = Array.from({ length: MAX_TAG }, (_, i) => tx.insert('Logical_Switch_Port', { name: `full-${i + 1}`, parent_name: 'vm3', tag: i + 1 }));
    tx.mutate('Logical_Switch', [['name', '==', 'full']], [['ports', 'insert', ports]]);
  });
  await until(a.nb, () => a.nb.replica.findOne('Logical_Switch_Port', 'name', `full-${MAX_TAG}`));
  const before = (await select(a.nb, 'Logical_Switch_Port', [], ['name'])).length;
  const err = await endpoint(a, 'ep-full', '40', 'vm3').then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof DomainError && err.code === 'exhausted', `refused as exhausted (${(err as Error).message})`);
  t.match((err as Error).message, /vm3 has 4095 container ports/);
  t.equal((await select(a.nb, 'Logical_Switch_Port', [], ['name'])).length, before, 'no port written');
});

t.test("the VM's port, by name or by its NIC's MAC", async (t) => {
  await vmSwitch('more', { 'twin-1': '0a:58:0a:fa:00:99', 'twin-2': '0a:58:0a:fa:00:99' });
  const replica = a.nb.replica;
  await until(a.nb, () => replica.findOne('Logical_Switch_Port', 'name', 'twin-2'));
  t.same(findVmPort(replica, { name: 'vm1' }), { name: 'vm1', up: false }, 'by name');
  t.same(findVmPort(replica, { mac: VM_MAC.toUpperCase() }), { name: 'vm1', up: false }, 'by MAC, in any case');
  const refused = (by: Parameters<typeof findVmPort>[1]) => {
    try {
      findVmPort(replica, by);
      return undefined;
    } catch (e) {
      return e as DomainError;
    }
  };
  t.equal(refused({ name: 'nope' })?.code, 'not-found', 'an unknown name');
  t.match(refused({ name: 'ep-0' })?.message ?? '', /is itself a container port/, 'a child cannot be a parent');
  t.match(refused({ name: 'overlay-ep' })?.message ?? '', /a port this driver made/, "a port of ours cannot be the VM's");
  t.equal(refused({ mac: '0a:58:0a:fa:00:77' })?.code, 'not-found', 'no port with the MAC');
  const twins = refused({ mac: '0a:58:0a:fa:00:99' });
  t.equal(twins?.code, 'conflict', 'two ports with the MAC');
  t.match(twins?.message ?? '', /twin-1, twin-2.*--vm-port/, 'named, with what to do');
  // The MAC of one of our own ports (an endpoint) is never taken for the VM's.
  const ours = a.networks.findEndpoint('ep-0')!.mac;
  t.equal(refused({ mac: ours })?.code, 'not-found', `the MAC of an endpoint's port (${ours})`);
});
