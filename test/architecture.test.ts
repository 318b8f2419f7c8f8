/**
 * The layers of src/ look only down (docs/architecture.md): each folder
 * imports only the folders below it, and no file imports itself back
 * through others. Reads the sources' relative imports; no processes.
 */
import t from 'tap';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

const SRC = path.resolve(import.meta.dirname, '..', 'src');

/** What each top-level folder (or file) of src/ may import. */
const ALLOWED: Record<string, string[]> = {
  errors: [],
  config: ['net'],
  protocol: [],
  net: ['errors'],
  ovsdb: [],
  ovn: ['errors', 'net', 'ovsdb'],
  // Host plumbing names its OVS rows with the OVN model's keys and takes its network records.
  host: ['errors', 'net', 'ovn'],
  docker: [],
  warm: ['errors', 'net', 'ovn', 'host'],
  // Published ports: the host's firewall and the endpoint's OVS interface, behind their own interface.
  publish: ['errors', 'net', 'ovn', 'host'],
  driver: ['errors', 'net', 'ovn', 'host', 'warm', 'publish', 'docker', 'protocol'],
  server: ['errors', 'driver', 'protocol'],
  service: ['errors', 'config', 'net', 'ovsdb', 'ovn', 'host', 'warm', 'publish', 'docker', 'driver', 'server'],
  cleanup: ['errors', 'config', 'ovsdb', 'ovn', 'host', 'service'],
  ports: ['config', 'docker', 'host', 'publish'],
  cli: ['config', 'service', 'cleanup', 'ports'],
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const file = path.join(dir, name);
    if (statSync(file).isDirectory()) return sourceFiles(file);
    return file.endsWith('.ts') ? [file] : [];
  });
}

/** Each file's relative imports, as source paths (static, dynamic and type-only alike). */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sourceFiles(SRC)) {
    const text = readFileSync(file, 'utf8');
    const deps = [...text.matchAll(/(?:\bfrom|\bimport)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)].map((m) =>
      path.resolve(path.dirname(file), m[1]!).replace(/\.js$/, '.ts'),
    );
    graph.set(file, [...new Set(deps)]);
  }
  return graph;
}

/** src/x/y.ts -> "x"; src/x.ts -> "x". */
function unit(file: string): string {
  const [first] = path.relative(SRC, file).split(path.sep);
  return first!.replace(/\.ts$/, '');
}

const graph = importGraph();

t.test('every folder of src/ is placed in the layers', async (t) => {
  const units = new Set([...graph.keys()].map(unit));
  t.same([...units].filter((u) => !(u in ALLOWED)), [], 'a new folder needs its place in ALLOWED');
  for (const [file, deps] of graph) {
    for (const dep of deps) t.ok(graph.has(dep), `${path.relative(SRC, file)} imports ${path.relative(SRC, dep)}, which exists`);
  }
});

t.test('each folder imports only the layers below it', async (t) => {
  const wrong: string[] = [];
  for (const [file, deps] of graph) {
    const from = unit(file);
    for (const dep of deps) {
      const to = unit(dep);
      if (to !== from && !ALLOWED[from]?.includes(to)) wrong.push(`${path.relative(SRC, file)} -> ${path.relative(SRC, dep)}`);
    }
  }
  t.same(wrong, [], 'no import against the layers');
});

t.test('no file imports itself back through others', async (t) => {
  const cycles: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (file: string) => {
    state.set(file, 'open');
    stack.push(file);
    for (const dep of graph.get(file) ?? []) {
      if (state.get(dep) === 'open') cycles.push([...stack.slice(stack.indexOf(dep)), dep].map((f) => path.relative(SRC, f)).join(' -> '));
      else if (!state.has(dep)) visit(dep);
    }
    stack.pop();
    state.set(file, 'done');
  };
  for (const file of graph.keys()) if (!state.has(file)) visit(file);
  t.same(cycles, [], 'no import cycle');
});
