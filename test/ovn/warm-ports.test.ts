/**
 * Warm ports' rows (src/ovn/warm-ports.ts), on a bare NB ovsdb-server: where
 * a warm port goes and which address it takes, the state changes that are
 * refused, removal, and what is left after ports vanish. Replies lost
 * mid-change are in retries.test.ts; endpoints meeting warm ports in
 * warm-holders.test.ts and switch-macs.test.ts.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { DomainError } from '../../src/errors.js';
import { macFromIPv4 } from '../../src/net/mac.js';
import { OvnPools } from '../../src/ovn/pools.js';
import { portSetName } from '../../src/ovn/port-sets.js';
import { reservationKey, warmHolder } from '../../src/ovn/records.js';
import type { WarmPort } from '../../src/ovn/warm-ports.js';
import { useNbHosts, type NbHost } from '../harness/nb-hosts.js';
import { networkSpec, poolNetwork } from './model-fixture.js';
import { externalIdsOf, rowNamed, wireMap, wireSet } from './nb-reads.js';

const [a, b] = (await useNbHosts(t, ['host-a', 'host-b'])) as [NbHost, NbHost];
const pools = new OvnPools(a.nb);

async function warmPort(pool: string): Promise<WarmPort> {
  const port = (await a.warm.create(pool, a.chassis, 1, 0))[0];
  if (!port) throw new Error(`no warm port on ${pool}`);
  return port;
}

async function holderOf(pool: string, port: WarmPort): Promise<string | undefined> {
  return (await externalIdsOf(a.nb, 'Address_Set', pool)).get(reservationKey(port.ipv4));
}

t.test("a pool's warm port takes its lowest free address, with that address's MAC, pinned to its host", async (t) => {
  const pool = await poolNetwork(a, pools, '10.101.0.0/29', 'net101', 1400);
  const port = await warmPort(pool.name);
  t.match(port, { pool: pool.name, ipv4: '10.101.0.2/29', mac: macFromIPv4('10.101.0.2'), mtu: 1400, state: 'warm' });
  t.equal(await holderOf(pool.name, port), warmHolder(port.name), 'the pool holds the address for it');
  const row = await rowNamed(a.nb, 'Logical_Switch_Port', port.name, ['addresses', 'port_security', 'options']);
  t.same(wireSet(row?.addresses), [`${port.mac} 10.101.0.2`]);
  t.same(wireSet(row?.port_security), [`${port.mac} 10.101.0.2`]);
  t.equal(wireMap(row?.options).get('requested-chassis'), a.chassis);
  t.same(a.warm.list(a.chassis).map((p) => p.name), [port.name], 'listed for its host');
  t.same(a.warm.list(b.chassis), [], 'not for another');
  t.equal(a.warm.find(port.name)?.ipv4, port.ipv4);
  t.equal(a.warm.findByAddress(a.chassis, pool.name, '10.101.0.2', ['warm'])?.name, port.name);
  t.equal(a.warm.findByAddress(a.chassis, pool.name, '10.101.0.2', ['claimed']), undefined, 'in its state only');
  // .3 to .6 are free: a fifth port would leave fewer than four for endpoints.
  t.equal((await a.warm.create(pool.name, a.chassis, 1, 4))[0], undefined, 'none when fewer than reserveFree addresses would stay free');
  t.ok((await a.warm.create(pool.name, a.chassis, 1, 3))[0], 'one when enough stay');
});

t.test('a batch: as many ports as asked for in one transaction, at the lowest free addresses, while reserveFree stay free', async (t) => {
  const pool = await poolNetwork(a, pools, '10.110.0.0/28', 'net110');
  // .2 to .14 are free (13).
  const first = await a.warm.create(pool.name, a.chassis, 3, 4);
  t.same(first.map((p) => p.ipv4), ['10.110.0.2/28', '10.110.0.3/28', '10.110.0.4/28'], 'the three lowest');
  t.same(new Set(first.map((p) => p.mac)).size, 3, 'each with its own MAC');
  for (const port of first) t.equal(await holderOf(pool.name, port), warmHolder(port.name), `${port.ipv4} held for its port`);
  const capped = await a.warm.create(pool.name, a.chassis, 20, 4);
  t.same(capped.map((p) => p.ipv4), ['.5', '.6', '.7', '.8', '.9', '.10'].map((x) => `10.110.0${x}/28`), 'only as many as leave four free');
  t.same(await a.warm.create(pool.name, a.chassis, 1, 4), [], 'then none');

  const set = portSetName('net111');
  await a.networks.ensureNetwork({ ...networkSpec(a, 111, 'net111'), ipv4: [{ subnet: '10.111.0.0/24', gateway: '10.111.0.1', aux: ['10.111.0.4'] }] });
  const chosen: string[] = [];
  const batch = await a.warm.create(set, a.chassis, 4, 0, { avoid: () => ['10.111.0.3'], onChosen: (ips) => chosen.push(...ips) });
  t.same(batch.map((p) => p.ipv4), ['10.111.0.2/24', '10.111.0.5/24', '10.111.0.6/24', '10.111.0.7/24'], 'on a port set: past the gateway, the --aux-address and an address being given out');
  t.same(chosen, ['10.111.0.2', '10.111.0.5', '10.111.0.6', '10.111.0.7'], 'told every address it chose');
  t.same(a.warm.list(a.chassis, set).map((p) => p.state), ['warm', 'warm', 'warm', 'warm'], 'all warm, in one port set');
});

t.test('a port adopts only what it may: a claimed address, not a warm one of a pool, nor a port that is gone', async (t) => {
  const pool = await poolNetwork(a, pools, '10.102.0.0/24', 'net102');
  const port = await warmPort(pool.name);
  const early = await a.warm.adopt(port, 'net102', 'ep102').then(() => undefined, (e: unknown) => e as DomainError);
  t.equal(early?.code, 'conflict');
  t.equal(early?.message, `address ${port.ipv4} of port ${port.name} is not claimed for an endpoint (${warmHolder(port.name)})`);
  t.equal(await a.warm.claim(port, `${pool.token} cafe0001`), true, 'claimed');
  t.equal(await a.warm.claim(port, `${pool.token} cafe0002`), false, 'not twice');
  t.equal(a.warm.find(port.name)?.state, 'claimed');
  const endpoint = await a.warm.adopt(port, 'net102', 'ep102');
  t.match(endpoint, { name: port.name, endpointId: 'ep102', networkId: 'net102', mac: port.mac });
  t.match(a.warm.find(port.name), { state: 'adopted', endpointId: 'ep102' });

  const other = await warmPort(pool.name);
  await a.warm.remove([other]);
  const vanished = await a.warm.adopt(other, 'net102', 'ep102b').then(() => undefined, (e: unknown) => e as DomainError);
  t.equal(vanished?.code, 'not-found');
  t.equal(vanished?.message, `warm port ${other.name} vanished before endpoint ep102b could adopt it`);
});

t.test("remove: a warm port goes with its address, a claimed one leaves Docker's address, an adopted one stays", async (t) => {
  const pool = await poolNetwork(a, pools, '10.103.0.0/24', 'net103');
  const [warm, claimed, adopted] = [await warmPort(pool.name), await warmPort(pool.name), await warmPort(pool.name)];
  await a.warm.claim(claimed, `${pool.token} cafe0003`);
  await a.warm.claim(adopted, `${pool.token} cafe0004`);
  await a.warm.adopt(adopted, 'net103', 'ep103');
  await a.warm.remove([warm, claimed, adopted]);
  t.equal(await rowNamed(a.nb, 'Logical_Switch_Port', warm.name, ['name']), undefined, 'the warm port is gone');
  t.equal(await holderOf(pool.name, warm), undefined, 'and its address free');
  t.equal(await rowNamed(a.nb, 'Logical_Switch_Port', claimed.name, ['name']), undefined, 'the claimed port is gone');
  t.equal(await holderOf(pool.name, claimed), `${pool.token} cafe0003`, "its address is still Docker's");
  t.ok(await rowNamed(a.nb, 'Logical_Switch_Port', adopted.name, ['name']), "the adopted port is the endpoint's, and stays");
});

t.test('warm ports go on IPv4-only switches with a network of their host: by pool, or by port set', async (t) => {
  const pool = await poolNetwork(a, pools, '10.104.0.0/24', 'net104');
  await a.networks.ensureNetwork(networkSpec(a, 105, 'net105'));
  await a.networks.ensureNetwork({ ...networkSpec(a, 106, 'net106'), ipv6: [{ subnet: 'fd06::/64' }] });
  await b.networks.ensureNetwork(networkSpec(b, 107, 'net107'));
  await a.nb.replica.waitFor(() => a.networks.findNetwork('net107'), { timeoutMs: 5000 });
  const eligible = a.warm.eligiblePools(a.chassis);
  t.ok(eligible.includes(pool.name), "a pool's switch, by its pool");
  t.ok(eligible.includes(portSetName('net105')), "a network of Docker's IPAM, by its port set");
  t.notOk(eligible.includes(portSetName('net106')), 'not a dual-stack one');
  t.notOk(eligible.includes(portSetName('net107')), "nor another host's");
  t.ok(a.warm.isEligible(portSetName('net105'), a.chassis));
  t.notOk(a.warm.isEligible(portSetName('net107'), a.chassis));
});

t.test("on a port set: the lowest address no port has, not below the floor, nor one being given out", async (t) => {
  const set = portSetName('net108');
  await a.networks.ensureNetwork({ ...networkSpec(a, 108, 'net108'), ipv4: [{ subnet: '10.108.0.0/24', gateway: '10.108.0.1', aux: ['10.108.0.3'] }] });
  await a.networks.ensureEndpoint({ networkId: 'net108', endpointId: 'ep108', ipv4: '10.108.0.2/24', chassis: a.chassis });
  const lowest = await warmPort(set);
  t.equal(lowest.ipv4, '10.108.0.4/24', 'above the endpoint and the --aux-address');
  const chosen: string[] = [];
  const avoiding = (await a.warm.create(set, a.chassis, 1, 0, { avoid: () => ['10.108.0.5'], onChosen: (ips) => chosen.push(...ips) }))[0];
  t.equal(avoiding?.ipv4, '10.108.0.6/24', 'not an address an endpoint is being created with');
  t.same(chosen, ['10.108.0.6'], 'told the address it chose');
  const floored = (await a.warm.create(set, a.chassis, 1, 0, { floor: '10.108.0.100' }))[0];
  t.equal(floored?.ipv4, '10.108.0.100/24', 'not below the floor');
  t.equal(await holderOf(set, lowest), warmHolder(lowest.name), 'the port set holds its address');
  // Counting its own warm ports' addresses as free: those Docker's IPAM gives next.
  t.same([...a.warm.preferredAddresses(set, a.chassis, 3)], ['10.108.0.4', '10.108.0.5', '10.108.0.6']);
  t.same([...a.warm.preferredAddresses(set, a.chassis, 2, '10.108.0.100')], ['10.108.0.100', '10.108.0.101']);
});

t.test('a warm port that vanishes is reported to its host, and the address it held is given back', async (t) => {
  const pool = await poolNetwork(a, pools, '10.109.0.0/24', 'net109');
  const port = await warmPort(pool.name);
  let stop = () => {};
  const removed = new Promise<string>((resolve) => {
    stop = a.warm.onRemoved(a.chassis, resolve);
  });
  t.teardown(() => stop());
  // As after a crash between two writes: the port is gone, its address still held as warm.
  await b.nb.transaction((tx, replica) => {
    const ls = replica.findOne('Logical_Switch', 'name', pool.name)!;
    tx.mutate('Logical_Switch', [['_uuid', '==', ls._uuid]], [['ports', 'delete', [port.uuid]]]);
  });
  t.equal(await Promise.race([removed, sleep(5000, 'nothing within 5 s', { ref: false })]), port.name, 'its host is told');
  t.equal(await holderOf(pool.name, port), warmHolder(port.name), 'its address is still held');
  t.equal(await a.warm.releaseOrphanedAddresses(), 1, 'one address given back');
  t.equal(await holderOf(pool.name, port), undefined, 'free again');
  t.equal(await a.warm.releaseOrphanedAddresses(), 0, 'and nothing the second time');
});
