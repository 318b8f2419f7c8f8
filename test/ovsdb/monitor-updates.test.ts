/**
 * One connection's monitor updates alone: held back until their monitor's
 * reply is applied, then handed on in order; a dropped monitor's updates,
 * and those of monitors nobody holds, are discarded.
 */
import t from 'tap';
import { MonitorUpdates } from '../../src/ovsdb/monitor-updates.js';

function recorder() {
  const seen: string[] = [];
  return { seen, handler: (method: string, params: unknown[]) => seen.push(`${method} ${String(params[0])} ${String(params[1])}`) };
}

t.test('updates are held back until release, then handed on in order', async (t) => {
  const updates = new MonitorUpdates();
  const { seen, handler } = recorder();
  updates.hold('data', handler);
  updates.receive('update2', ['data', 1]);
  updates.receive('update3', ['data', 2]);
  t.same(seen, [], 'nothing before the reply is applied');
  updates.release('data');
  t.same(seen, ['update2 data 1', 'update3 data 2']);
  updates.receive('update', ['data', 3]);
  t.same(seen.at(-1), 'update data 3', 'after release, as they come');
});

t.test('other notifications and monitors nobody holds are ignored', async (t) => {
  const updates = new MonitorUpdates();
  const { seen, handler } = recorder();
  updates.hold('data', handler);
  updates.release('data');
  updates.receive('locked', ['data', 1]);
  updates.receive('update2', [7, 1]);
  updates.receive('update2', ['extra', 1]);
  t.same(seen, []);
});

t.test('a monitor dropped while its held updates are applied stops there', async (t) => {
  const updates = new MonitorUpdates();
  const seen: unknown[] = [];
  updates.hold('data', (_method, params) => {
    seen.push(params[1]);
    if (params[1] === 2) updates.drop('data');
  });
  for (const n of [1, 2, 3]) updates.receive('update2', ['data', n]);
  updates.release('data');
  t.same(seen, [1, 2], 'what came after the failed update is stale');
  updates.receive('update2', ['data', 4]);
  t.same(seen, [1, 2], 'and nothing after the drop');
});

t.test('each monitor has its own handler', async (t) => {
  const updates = new MonitorUpdates();
  const server = recorder();
  const data = recorder();
  updates.hold('server', server.handler);
  updates.hold('data-1', data.handler);
  updates.receive('update2', ['data-1', 'a']);
  updates.release('server');
  updates.receive('update2', ['server', 'b']);
  t.same(server.seen, ['update2 server b']);
  t.same(data.seen, []);
  updates.release('data-1');
  t.same(data.seen, ['update2 data-1 a']);
});
