/**
 * Talks to the plugin the way dockerd does: POST with a JSON body and no
 * Content-Type, over its unix socket.
 */
import http from 'node:http';

export interface PluginReply {
  status: number;
  body: Record<string, unknown>;
}

export function callPlugin(socketPath: string, method: string, body?: unknown, rawBody?: string): Promise<PluginReply> {
  const payload = rawBody ?? (body === undefined ? '' : `${JSON.stringify(body)}\n`);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        socketPath,
        path: `/${method}`,
        method: 'POST',
        headers: { Accept: 'application/vnd.docker.plugins.v1.2+json', 'Content-Length': Buffer.byteLength(payload) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          try {
            resolve({ status: res.statusCode ?? 0, body: (text ? JSON.parse(text) : {}) as Record<string, unknown> });
          } catch (err) {
            reject(new Error(`${method}: reply is not JSON: ${text.slice(0, 200)}`, { cause: err }));
          }
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}
