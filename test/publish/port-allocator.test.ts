/** Host port choice: the port asked for, the first free one of a range, or the next free ephemeral one. */
import t from 'tap';
import { overlaps, parsePortRange, PortAllocator } from '../../src/publish/port-allocator.js';
import type { PortRequest } from '../../src/publish/port-map.js';

const request = (hostPort: number, hostPortEnd = hostPort): PortRequest => ({ protocol: 'tcp', hostIp: '', hostPort, hostPortEnd, containerPort: 80 });

t.test('fixed, range, ephemeral', async (t) => {
  const busy = new Set([8080, 9100, 9101, 40000]);
  const free = async (port: number) => !busy.has(port);
  const allocator = new PortAllocator({ low: 40000, high: 40003 });
  t.equal(await allocator.choose(request(8081), free), 8081);
  t.equal(await allocator.choose(request(8080), free), undefined, 'a busy fixed port: none');
  t.equal(await allocator.choose(request(9100, 9105), free), 9102, 'the first free one of the range');
  t.equal(await allocator.choose(request(9100, 9101), free), undefined, 'a range all busy: none');
  t.equal(await allocator.choose(request(0, 0), free), 40001, 'ephemeral: the first free one');
  busy.add(40001);
  t.equal(await allocator.choose(request(0, 0), free), 40002, 'the next one, not the lowest again');
  busy.add(40002);
  t.equal(await allocator.choose(request(0, 0), free), 40003);
  busy.add(40003);
  t.equal(await allocator.choose(request(0, 0), free), undefined, 'the range exhausted');
  busy.delete(40001);
  t.equal(await allocator.choose(request(0, 0), free), 40001, 'wraps around');
});

t.test('overlap of host addresses', async (t) => {
  const at = (hostIp: string, hostPort = 80, protocol: 'tcp' | 'udp' = 'tcp') => ({ protocol, hostIp, hostPort });
  t.ok(overlaps(at(''), at('127.0.0.1')), 'every address overlaps one');
  t.ok(overlaps(at('10.0.0.1'), at('')));
  t.ok(overlaps(at('10.0.0.1'), at('10.0.0.1')));
  t.notOk(overlaps(at('10.0.0.1'), at('10.0.0.2')));
  t.notOk(overlaps(at(''), at('', 81)));
  t.notOk(overlaps(at(''), at('', 80, 'udp')), 'tcp and udp are apart');
});

t.test('the host ephemeral range', async (t) => {
  t.same(parsePortRange('32768\t60999\n'), { low: 32768, high: 60999 });
  t.equal(parsePortRange('60999 32768'), undefined);
  t.equal(parsePortRange('junk'), undefined);
});
