// Scratch (not committed): which address does Docker's own IPAM give each container on a remote-driver network?
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { ensureBusyboxImage, startDockerEngine } from '../test/harness/docker.js';
import { startDriverProcess } from '../test/harness/driver-process.js';
import { startOvnStack } from '../test/harness/ovn-stack.js';
import { makePluginDirs } from '../test/harness/plugin-dirs.js';

for (const version of ['20.10', '26.1'] as const) {
  const sfx = randomBytes(3).toString('hex');
  const name = `ovnp${sfx}`;
  const dirs = await makePluginDirs(name);
  const stack = await startOvnStack();
  const engine = await startDockerEngine({ engine: version, pluginDir: dirs.pluginDir });
  const driver = await startDriverProcess({ name, pluginDir: dirs.socketDir, nbRemote: stack.nbRemote, ovsDb: stack.ovsRemote,
    logFile: path.join(dirs.dir, 'driver.log'), extraArgs: ['--docker-host', 'none', '--masquerade', 'false'] });
  try {
    const image = await ensureBusyboxImage(engine);
    const d = async (...a: string[]) => (await engine.docker(...a)).stdout.trim();
    await d('network', 'create', '-d', name, '--subnet', '10.93.0.0/24', 'p');
    const ips: string[] = [];
    for (let i = 0; i < 4; i++) ips.push(await d('run', '--rm', '--net', 'p', image, 'sh', '-c', "ip -o -4 addr show eth0 | awk '{print $4}'"));
    await d('run', '-d', '--name', 'keep', '--net', 'p', image, 'sleep', '100');
    ips.push('keep:' + await d('inspect', '-f', '{{(index .NetworkSettings.Networks "p").IPAddress}}', 'keep'));
    for (let i = 0; i < 2; i++) ips.push(await d('run', '--rm', '--net', 'p', image, 'sh', '-c', "ip -o -4 addr show eth0 | awk '{print $4}'"));
    await d('rm', '-f', 'keep');
    await d('network', 'rm', 'p');
    await d('network', 'create', '-d', name, '--subnet', '10.94.0.0/24', '--ip-range', '10.94.0.128/25', 'q');
    for (let i = 0; i < 2; i++) ips.push('range:' + await d('run', '--rm', '--net', 'q', image, 'sh', '-c', "ip -o -4 addr show eth0 | awk '{print $4}'"));
    await d('network', 'rm', 'q');
    console.log(version, ips.join(' '));
  } finally {
    await engine.stop(); await driver.stop(); await stack.stop(); await dirs.remove();
  }
}
