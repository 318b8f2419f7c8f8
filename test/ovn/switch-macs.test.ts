/**
 * One MAC, one port on a switch, the gateway's included (src/ovn/switch-macs.ts;
 * issue 9): two hosts' networks on one pool's switch, on a bare NB
 * ovsdb-server; no OVN daemons are needed. Which MAC an endpoint gets is in
 * endpoints.test.ts.
 */
import t, { type Test } from 'tap';
import { DomainError } from '../../src/errors.js';
import { macFromIPv4 } from '../../src/net/mac.js';
import type { EndpointRecord } from '../../src/ovn/networks.js';
import { portSetName } from '../../src/ovn/port-sets.js';
import { rowNamed } from './nb-reads.js';
import { endpoint, networkSpec, useSharedSwitch } from './model-fixture.js';

const { a, b, seenByBoth, sharedNetwork } = await useSharedSwitch(t);

async function portNamed(name: string): Promise<Record<string, unknown> | undefined> {
  return rowNamed(a.nb, 'Logical_Switch_Port', name, ['name', 'addresses']);
}

async function conflict(t: Test, p: Promise<unknown>, message: RegExp): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, DomainError, 'refused with a DomainError');
  t.equal((err as DomainError | undefined)?.code, 'conflict');
  t.match((err as Error | undefined)?.message, message);
}

t.test("a MAC another host's endpoint holds is refused, whatever its case, and nothing is written", async (t) => {
  const { netA, netB } = await sharedNetwork(11);
  const first = await endpoint(a, netA, 'mac-a1', '10.11.0.2/24');
  t.equal(first.mac, macFromIPv4('10.11.0.2'));
  await seenByBoth('mac-a1');
  await conflict(t, endpoint(b, netB, 'mac-b1', '10.11.0.3/24', first.mac), /MAC address 0a:58:0a:0b:00:02 is already used by port mac-a1 on network b11; choose another --mac-address/);
  await conflict(t, endpoint(b, netB, 'mac-b2', '10.11.0.4/24', first.mac.toUpperCase()), /already used by port mac-a1/);
  t.equal(await portNamed('mac-b1'), undefined, 'no port for the refused endpoint');
  t.equal(await portNamed('mac-b2'), undefined, 'no port for the refused endpoint');
  // A MAC nobody holds is still fine.
  const own = await endpoint(b, netB, 'mac-b3', '10.11.0.5/24', '02:42:0a:0b:00:05');
  t.equal(own.mac, '02:42:0a:0b:00:05');
});

t.test("the gateway's MAC is refused, with or without its localport", async (t) => {
  const { netA, switchName } = await sharedNetwork(12);
  const gatewayMac = macFromIPv4('10.12.0.1');
  await conflict(t, endpoint(a, netA, 'gw-a1', '10.12.0.2/24', gatewayMac), /MAC address 0a:58:0a:0c:00:01 is the gateway's on network a12; choose another --mac-address/);
  // Without the localport row the MAC is still the gateway's (hosts answer ARP for it).
  await a.nb.transaction((tx, replica) => {
    const ls = replica.findOne('Logical_Switch', 'name', switchName)!;
    const gw = replica.findOne('Logical_Switch_Port', 'name', `${switchName}-gw`)!;
    tx.mutate('Logical_Switch', [['_uuid', '==', ls._uuid]], [['ports', 'delete', [gw._uuid]]]);
  });
  t.equal(await portNamed(`${switchName}-gw`), undefined, 'the gateway localport is gone');
  await conflict(t, endpoint(a, netA, 'gw-a2', '10.12.0.3/24', gatewayMac), /is the gateway's on network a12/);
  t.equal(await portNamed('gw-a1'), undefined);
  t.equal(await portNamed('gw-a2'), undefined);
});

t.test('two hosts asking for one MAC at once: one gets it, the other is refused after re-running', async (t) => {
  const { netA, netB } = await sharedNetwork(13);
  const mac = '02:42:0a:0d:00:99';
  // Both transactions are built before either commits: only the guard on the switch's ports tells them apart.
  const results = await Promise.allSettled([endpoint(a, netA, 'race-a', '10.13.0.2/24', mac), endpoint(b, netB, 'race-b', '10.13.0.3/24', mac)]);
  const won = results.filter((r) => r.status === 'fulfilled');
  const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  t.equal(won.length, 1, 'one endpoint gets the MAC');
  t.equal(lost.length, 1, 'the other is refused');
  const winner = (won[0] as PromiseFulfilledResult<EndpointRecord> | undefined)?.value.name;
  t.type(lost[0]?.reason, DomainError);
  t.match((lost[0]?.reason as Error | undefined)?.message, new RegExp(`MAC address ${mac} is already used by port ${winner}`));
  const ports = [await portNamed('race-a'), await portNamed('race-b')].filter(Boolean);
  t.equal(ports.length, 1, 'one port in NB');
});

t.test("a warm port the endpoint takes over frees its MAC for it", async (t) => {
  const networkId = 'warm14';
  // Docker's IPAM: the switch has its own port set, and the warm port the lowest free address.
  await b.networks.ensureNetwork(networkSpec(b, 14, networkId, false));
  const warm = (await b.warm.create(portSetName(networkId), b.chassis, 1, 0))[0];
  t.ok(warm, 'a warm port');
  t.equal(warm?.ipv4, '10.14.0.2/24');
  t.equal(warm?.state, 'warm');
  // Another port's MAC is refused ...
  await conflict(t, endpoint(b, networkId, 'warm-b0', '10.14.0.3/24', warm!.mac), new RegExp(`already used by port ${warm!.name}`));
  // ... but the one of the warm port this endpoint's address takes over is the endpoint's to take.
  const ep = await endpoint(b, networkId, 'warm-b1', '10.14.0.2/24', warm!.mac);
  t.equal(ep.mac, warm!.mac);
  t.equal(await portNamed(warm!.name), undefined, 'the warm port went in the same transaction');
});
