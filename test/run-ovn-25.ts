/**
 * The second pass of `npm test`: the files that run a real OVN stack, again,
 * against OVN 25.03 / OVS 3.5 from a Debian 13 root (OVN_TEST_ROOT, see
 * test/harness/ovn-binaries.ts and docs/compatibility.md). The first pass
 * (plain `tap`) ran everything against the host's packages (OVN 23.03).
 *
 * No root: says so loudly and exits 0, so that a developer's `npm test` works
 * without one; with OVN_25_REQUIRED=1 (as .ci/run sets after building the
 * root) a missing root fails instead of skipping.
 *
 *   node --import tsx test/run-ovn-25.ts [tap args…]
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DEFAULT_ROOT = '/var/cache/ovn-docker-driver/debian13-root';
const root = process.env.OVN_TEST_ROOT || DEFAULT_ROOT;

/** Every file whose point is OVN's behaviour end to end (the rest mocks it or tests the client alone). */
const files = [
  ...readdirSync(path.join(repo, 'test/e2e'))
    .filter((f) => f.endsWith('.test.ts'))
    .sort()
    .map((f) => `test/e2e/${f}`),
  'test/harness/harness.test.ts',
  'test/harness/two-hosts.test.ts',
  'test/driver/engine-28-dataplane.test.ts',
];

function banner(lines: string[]): void {
  const bar = '#'.repeat(78);
  const text = [bar, ...lines.map((l) => `# ${l}`), bar].join('\n');
  // Both streams: whoever reads only one of them still sees it.
  process.stdout.write(`\n${text}\n`);
  process.stderr.write(`\n${text}\n`);
}

if (!existsSync(path.join(root, '.complete'))) {
  const required = process.env.OVN_25_REQUIRED === '1';
  banner([
    `${required ? 'FAILED' : 'SKIPPED'}: the OVN 25.03 / OVS 3.5 pass (${files.length} files) did not run:`,
    `no Debian 13 root at ${root} (no .complete in it).`,
    'Only OVN 23.03 (the host\'s packages) was tested. To test 25.03 too:',
    `  sudo scripts/debian13-ovn-root.sh ${root}   # debootstrap, about 80 s`,
    '  npm test                                   # or: node --import tsx test/run-ovn-25.ts',
    'OVN_TEST_ROOT=DIR picks another root.',
  ]);
  process.exit(required ? 1 : 0);
}

banner([`OVN 25.03 pass: ${files.length} files with OVN_TEST_ROOT=${root}`]);
// Coverage was the first pass's business; tap's own bin, no shell.
const tap = path.join(repo, 'node_modules/.bin/tap');
const child = spawn(tap, ['--disable-coverage', ...process.argv.slice(2), ...files], {
  cwd: repo,
  stdio: 'inherit',
  env: { ...process.env, OVN_TEST_ROOT: root },
});
// Forwarded so that tap (and through it the harness) cleans up its daemons.
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => {
  banner([`OVN 25.03 pass (OVN_TEST_ROOT=${root}): ${code === 0 ? 'passed' : `FAILED (${signal ?? `exit ${String(code)}`})`}`]);
  process.exit(code ?? 1);
});
