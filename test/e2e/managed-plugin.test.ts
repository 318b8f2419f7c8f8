/**
 * The driver installed as Docker users install network plugins: a managed
 * plugin built by scripts/build-plugin.sh and created with `docker plugin
 * create`, on engines 20.10 and 26.1, serving a real single-chassis OVN.
 * The engine finds no legacy plugin (its plugin directory is empty), so
 * every call below goes through the managed plugin.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { dockerAvailable } from '../harness/docker.js';
import { startPluginLab, type PluginLab } from '../harness/managed-plugin.js';
import { waitFor } from '../harness/process.js';

const ENGINES = ['20.10', '26.1'] as const;

for (const version of ENGINES) {
  t.test(`managed plugin on engine ${version}`, async (t) => {
    if (!(await dockerAvailable(version))) {
      t.fail(`engine ${version} cannot be started on this machine`);
      return;
    }
    const sfx = randomBytes(3).toString('hex');
    const containers = ['a', 'b', 'c'].map((c) => `${c}-${sfx}`);
    const [a, b, c] = containers as [string, string, string];
    const n1 = `n1-${sfx}`;
    const n2 = `n2-${sfx}`;
    let lab: PluginLab | undefined;
    t.teardown(async () => {
      if (lab) {
        await lab.docker('rm', '-f', ...containers).catch(() => undefined);
        for (const net of [n1, n2]) await lab.docker('network', 'rm', net).catch(() => undefined);
        await lab.stop();
      }
    });

    // The root namespace's firewall is the machine's: this test does not touch it.
    // 26.1's plugin reaches NB over ssl:, with the client's key and certificates in the plugin's pki mount.
    const nbSsl = version === '26.1';
    lab = await startPluginLab(version, `ovn${sfx}`, ['OVN_DOCKER_MASQUERADE=false', 'LOG_LEVEL=debug'], { nbSsl });
    const { stack, engine, plugin, image, docker, ipOf, pings } = lab;
    t.ok(await plugin.enabled(), 'plugin enabled');
    // The engine copies the plugin's output to its log as it comes.
    const connecting = await waitFor(async () => (await plugin.logLines()).find((l) => l.includes('connecting to the OVN Northbound database')), {
      timeoutMs: 10_000,
      what: "the driver's NB line in the engine's log",
    });
    t.match(connecting, nbSsl ? /nb[^,]*ssl:127\.0\.0\.1:/ : /nb[^,]*unix:\/var\/run\/ovn\//, `NB over ${nbSsl ? 'ssl:' : 'the mounted unix socket'}`);

    const id1 = await docker('network', 'create', '-d', plugin.driver, '--subnet', '10.83.0.0/24', n1);
    t.match(await stack.nbctl('--bare', '--columns=name', 'list', 'Logical_Switch'), id1, 'network is a logical switch');
    for (const name of [a, b]) await docker('run', '-d', '--restart', 'always', '--net', n1, '--name', name, image, 'sleep', '3600');
    const ipB = await ipOf(b, n1);
    t.match(ipB, /^10\.83\.0\.\d+$/, 'address from the subnet asked for');
    t.ok(await pings(a, ipB), 'a pings b by address');
    t.ok(await pings(a, b), 'a pings b by name');

    // connect / disconnect a running container
    await docker('network', 'create', '-d', plugin.driver, '--subnet', '10.84.0.0/24', n2);
    await docker('run', '-d', '--net', n2, '--name', c, image, 'sleep', '3600');
    t.notOk(await pings(c, ipB).catch(() => false), 'c on n2 cannot reach b on n1');
    await docker('network', 'connect', n2, a);
    const ipA2 = await ipOf(a, n2);
    t.match(ipA2, /^10\.84\.0\.\d+$/, 'a got an address on n2');
    t.ok(await pings(c, ipA2), 'c reaches a over n2 after connect');
    await docker('network', 'disconnect', n2, a);
    t.notOk(await pings(c, ipA2).catch(() => false), 'a is gone from n2 after disconnect');

    const lines = await plugin.logLines();
    t.ok(lines.some((l) => l.includes('serving Docker')), "the driver's log reaches the engine's log");

    // The engine restarts (as `systemctl restart docker`): the plugin comes back enabled
    // before the --restart always containers need it.
    await engine.restartDaemon();
    t.ok(await plugin.enabled(), 'plugin enabled after the engine restarted');
    const running = (name: string) => docker('inspect', '-f', '{{.State.Running}}', name).then((s) => s === 'true');
    await waitFor(async () => ((await running(a)) && (await running(b))) || undefined, {
      timeoutMs: 60_000,
      what: 'the --restart always containers running again',
    });
    t.ok(await pings(a, b), 'a pings b by name after the engine restarted');
  });
}
