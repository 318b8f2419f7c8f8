/**
 * Where Docker finds the plugin: a unix socket in /run/docker/plugins
 * (owner root, mode 0600: only root, i.e. dockerd, may talk to it), or TCP
 * on loopback for a spec-file setup.
 */
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';

export type ListenTarget = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

export async function listen(app: FastifyInstance, target: ListenTarget): Promise<string> {
  if (target.kind === 'tcp') {
    return app.listen({ host: target.host, port: target.port });
  }
  await mkdir(path.dirname(target.path), { recursive: true, mode: 0o755 });
  await removeStaleSocket(target.path);
  await app.listen({ path: target.path });
  await chmod(target.path, 0o600);
  return target.path;
}

/** A socket file left by a crashed driver blocks listen(); one that still answers means another driver runs. */
async function removeStaleSocket(socketPath: string): Promise<void> {
  const stat = await lstat(socketPath).catch(() => undefined);
  if (!stat) return;
  if (!stat.isSocket()) throw new Error(`${socketPath} exists and is not a socket; refusing to replace it`);
  const alive = await new Promise<boolean>((resolve) => {
    const probe = net.connect({ path: socketPath });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) throw new Error(`another process is already serving ${socketPath}; stop it first`);
  await unlink(socketPath);
}
