/**
 * bench/ovsdb: our OVSDB client against one-shot `ovn-nbctl`, in one run,
 * on a private ovsdb-server with OVN's NB schema.
 *
 * For each NB size (empty, then one switch holding 10,000 ports):
 *   - add one port: our client's transaction vs `ovn-nbctl lsp-add`
 *   - look one port up: our replica vs `ovn-nbctl lsp-list` / `find`
 * Prints medians and ratios as a Markdown table (pasted into the README).
 *
 *   npm run bench:ovsdb [-- --ports 10000 --samples 30]
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { performance } from 'node:perf_hooks';
import { OvsdbClient } from '../src/ovsdb/index.js';
import { median, time } from './stats.js';
import { startOvsdbServer } from '../test/harness/ovsdb-server.js';

const exec = promisify(execFile);

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isInteger(v) || v <= 0) throw new Error(`--${name} needs a positive integer`);
  return v;
}

const PORTS = arg('ports', 10_000);
const SAMPLES = arg('samples', 30);
const BATCH = 1000;


interface Row {
  size: number;
  what: string;
  ours: number;
  theirs: number;
  theirsName: string;
}

async function main(): Promise<void> {
  const server = await startOvsdbServer({ schema: 'nb' });
  const db = `--db=${server.unixRemote}`;
  const nbctl = (...args: string[]) => exec('ovn-nbctl', [db, ...args], { maxBuffer: 256 * 1024 * 1024 });
  const client = await OvsdbClient.connect({
    remote: server.unixRemote,
    database: 'OVN_Northbound',
    tables: ['Logical_Switch', 'Logical_Switch_Port'],
    indexes: { Logical_Switch: { columns: ['name'] } },
  });
  const rows: Row[] = [];
  try {
    await client.transaction((tx) => {
      tx.insert('Logical_Switch', { name: 'bench' });
    });
    let seq = 0;
    const addOurs = () =>
      client.transaction((tx) => {
        const name = `ours-${seq++}`;
        const p = tx.insert('Logical_Switch_Port', { name, addresses: ['0a:58:0a:00:00:02 10.0.0.2'] });
        tx.mutate('Logical_Switch', [['name', '==', 'bench']], [['ports', 'insert', [p]]]);
      });

    for (const size of [0, PORTS]) {
      if (size > 0) {
        const started = performance.now();
        for (let done = 0; done < size; done += BATCH) {
          await client.transaction((tx) => {
            const ports = [];
            for (let i = done; i < Math.min(size, done + BATCH); i++) {
              ports.push(tx.insert('Logical_Switch_Port', { name: `fill-${i}`, addresses: ['dynamic'] }));
            }
            tx.mutate('Logical_Switch', [['name', '==', 'bench']], [['ports', 'insert', ports]]);
          });
        }
        console.error(`filled ${size} ports in ${(performance.now() - started).toFixed(0)} ms`);
      }
      // Interleave the two so that drift on the machine hits both alike.
      const ours: number[] = [];
      const theirs: number[] = [];
      for (let i = 0; i < SAMPLES; i++) {
        ours.push(await time(addOurs));
        theirs.push(await time(() => nbctl('lsp-add', 'bench', `nbctl-${size}-${i}`)));
      }
      rows.push({ size, what: 'add a port', ours: median(ours), theirs: median(theirs), theirsName: 'ovn-nbctl lsp-add' });

      const lookOurs: number[] = [];
      const lookList: number[] = [];
      const lookFind: number[] = [];
      const target = size > 0 ? `fill-${size - 1}` : 'ours-0';
      for (let i = 0; i < SAMPLES; i++) {
        lookOurs.push(
          await time(() => {
            if (!client.replica.findOne('Logical_Switch_Port', 'name', target)) throw new Error('lookup failed');
          }),
        );
        lookList.push(await time(() => nbctl('lsp-list', 'bench')));
        lookFind.push(await time(() => nbctl('--bare', '--columns=_uuid', 'find', 'Logical_Switch_Port', `name=${target}`)));
      }
      rows.push({ size, what: 'look a port up', ours: median(lookOurs), theirs: median(lookList), theirsName: 'ovn-nbctl lsp-list' });
      rows.push({ size, what: 'look a port up', ours: median(lookOurs), theirs: median(lookFind), theirsName: 'ovn-nbctl find' });
    }
  } finally {
    await client.close();
    await server.stop();
  }

  const fmt = (ms: number) => (ms < 0.1 ? `${(ms * 1000).toFixed(1)} µs` : `${ms.toFixed(2)} ms`);
  console.log(`| ports in NB | operation | our client (median) | baseline | baseline (median) | speed-up |`);
  console.log(`|---:|---|---:|---|---:|---:|`);
  for (const r of rows) {
    console.log(
      `| ${r.size} | ${r.what} | ${fmt(r.ours)} | \`${r.theirsName}\` | ${fmt(r.theirs)} | ${(r.theirs / r.ours).toFixed(0)}x |`,
    );
  }
  console.log(`\n${SAMPLES} samples per cell, interleaved; node ${process.version}.`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
