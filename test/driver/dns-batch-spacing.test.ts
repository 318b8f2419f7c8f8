/**
 * When batches of container names go to OVN DNS: quickly after a quiet
 * spell, further apart while a burst of starts lasts, and quickly again once
 * it is over. Pure logic on a given clock.
 */
import t from 'tap';
import { DnsBatchSpacing } from '../../src/driver/dns-batch-spacing.js';

const timing = { firstDelayMs: 500, spacingMs: 2000, maxSpacingMs: 8000 };

/** Names arriving at these times (ms); returns when each batch went, as the publisher schedules them. */
function batchesFor(arrivals: number[], spacing = new DnsBatchSpacing(timing)): number[] {
  const batches: number[] = [];
  let scheduled: number | undefined;
  for (const at of arrivals) {
    if (scheduled !== undefined && scheduled <= at) {
      spacing.taken(scheduled);
      batches.push(scheduled);
      scheduled = undefined;
    }
    if (scheduled === undefined) scheduled = at + spacing.delayFor(at);
  }
  if (scheduled !== undefined) batches.push(scheduled);
  return batches;
}

t.test('a single start gets its name after the first delay', async (t) => {
  t.same(batchesFor([0]), [500]);
  t.same(batchesFor([0, 100, 400]), [500], 'names within the first delay share its batch');
});

t.test('a burst of starts: batches double their spacing up to the bound, so 20 starts over 16 s cost 5 batches, not 9', async (t) => {
  const burst = Array.from({ length: 20 }, (_, i) => i * 800);
  const batches = batchesFor(burst);
  t.same(batches, [500, 2500, 6500, 14500, 22500]);
  const gaps = batches.slice(1).map((b, i) => b - batches[i]!);
  t.same(gaps, [2000, 4000, 8000, 8000], 'spacing 2 s, 4 s, then at most 8 s');
  for (const at of burst) {
    const batch = batches.find((b) => b >= at)!;
    t.ok(batch - at <= timing.maxSpacingMs, `the name of the start at ${at} ms waits ${batch - at} ms, at most the bound`);
  }
});

t.test('after a quiet spell as long as the spacing, the next name goes after the first delay again', async (t) => {
  const spacing = new DnsBatchSpacing(timing);
  const burst = Array.from({ length: 20 }, (_, i) => i * 800);
  const lastOfBurst = batchesFor(burst, spacing).at(-1)!;
  spacing.taken(lastOfBurst);
  t.equal(spacing.delayFor(lastOfBurst + 8000), 500, 'quiet for the spacing reached (8 s): the delay is the first one');
  spacing.taken(lastOfBurst + 8500);
  t.equal(spacing.delayFor(lastOfBurst + 8500 + 1000), 1000, 'the spacing was reset to 2 s: 1 s after a batch, a name waits 1 s more');
});

t.test('a name during a running spacing never waits less than the first delay', async (t) => {
  const spacing = new DnsBatchSpacing(timing);
  spacing.taken(0);
  t.equal(spacing.delayFor(1900), 500);
});
