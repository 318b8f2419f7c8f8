/**
 * Network namespaces the tests make themselves, and traffic between them:
 * ping and a TCP echo (TCP matters: on the userspace datapath ping can
 * pass while TCP fails, see machine-notes).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { run } from './process.js';

export async function createNetns(prefix = 'ovnt'): Promise<string> {
  const name = `${prefix}-${randomBytes(4).toString('hex')}`;
  await run('ip', ['netns', 'add', name]);
  await run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return name;
}

/** Delete a namespace by its exact name; missing is fine. */
export async function deleteNetns(name: string): Promise<void> {
  await run('ip', ['netns', 'del', name]).catch(() => undefined);
}

/** Move a host link into ns as `ifName`, give it an address and bring it up. */
export async function moveIntoNetns(link: string, ns: string, ifName: string, cidr: string): Promise<void> {
  await run('ip', ['link', 'set', link, 'netns', ns]);
  await run('ip', ['-n', ns, 'link', 'set', link, 'name', ifName]);
  await run('ip', ['-n', ns, 'addr', 'add', cidr, 'dev', ifName]);
  await run('ip', ['-n', ns, 'link', 'set', ifName, 'up']);
}

/** What the engine does after Leave: the container end goes down, gets its old name back and returns to the host. */
export async function moveBackFromNetns(ns: string, ifName: string, link: string): Promise<void> {
  await run('ip', ['-n', ns, 'link', 'set', ifName, 'down']);
  await run('ip', ['-n', ns, 'link', 'set', ifName, 'name', link]);
  await run('ip', ['-n', ns, 'link', 'set', link, 'netns', '1']);
}

/** Whether a link of this name exists in the host namespace. */
export async function linkExists(name: string): Promise<boolean> {
  return run('ip', ['link', 'show', 'dev', name]).then(
    () => true,
    () => false,
  );
}

export async function ping(ns: string, ip: string): Promise<boolean> {
  try {
    const { stdout } = await run('ip', ['netns', 'exec', ns, 'ping', '-c1', '-W2', ip]);
    return /1 received/.test(stdout);
  } catch {
    return false;
  }
}

/** A TCP echo server inside ns; resolves once it listens. */
export function tcpEcho(ns: string, ip: string, port: number): Promise<{ stop(): Promise<void> }> {
  const script = `require('net').createServer((s) => s.pipe(s)).listen(${port}, ${JSON.stringify(ip)}, () => console.log('listening'))`;
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.stdout.once('data', () =>
      resolve({
        async stop() {
          child.kill('SIGTERM');
          await exited;
        },
      }),
    );
    void exited.then(() => reject(new Error('echo server exited early')));
  });
}

/** Send `text` over TCP from ns and return what came back. */
export async function tcpRoundTrip(ns: string, ip: string, port: number, text: string): Promise<string> {
  const client = `const s = require('net').connect(${port}, ${JSON.stringify(ip)}, () => s.end(${JSON.stringify(text)})); s.setTimeout(5000, () => process.exit(2)); s.on('data', (d) => process.stdout.write(d));`;
  const { stdout } = await run('ip', ['netns', 'exec', ns, process.execPath, '-e', client], { timeoutMs: 10_000 });
  return stdout;
}
