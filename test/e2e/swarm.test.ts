/**
 * Swarm services on the driver's networks, through the managed plugin (swarm
 * takes no legacy plugin) with OVN_DOCKER_SCOPE=global, on a single-node
 * swarm of engine 20.10 and of 26.1. Also what that scope does to a
 * standalone engine: 20.10 refuses the network, 26.1 takes it
 * (docs/swarm.md explains the choice).
 *
 * Services use --endpoint-mode dnsrr: the default VIP mode balances with
 * IPVS and iptables inside the containers, which these test engines run
 * without (their firewall would be the machine's).
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { dockerAvailable, ensureBusyboxImage, startDockerEngine, type DockerEngine } from '../harness/docker.js';
import { installPlugin, type ManagedPlugin } from '../harness/managed-plugin.js';
import { startOvnStack, type OvnStack } from '../harness/ovn-stack.js';
import { makeTempDir, removeDir, waitFor } from '../harness/process.js';

const ENGINES = ['20.10', '26.1'] as const;

for (const version of ENGINES) {
  t.test(`single-node swarm on engine ${version}`, async (t) => {
    if (!(await dockerAvailable(version))) {
      t.fail(`engine ${version} cannot be started on this machine`);
      return;
    }
    const sfx = randomBytes(3).toString('hex');
    const service = `web-${sfx}`;
    const attached = `att-${sfx}`;
    const net = `sw-${sfx}`;
    const standalone = `st-${sfx}`;
    const emptyPluginDir = await makeTempDir('no-plugins');

    let stack: OvnStack | undefined;
    let engine: DockerEngine | undefined;
    let plugin: ManagedPlugin | undefined;
    t.teardown(async () => {
      if (engine) {
        await engine.docker('rm', '-f', attached).catch(() => undefined);
        await engine.docker('service', 'rm', service).catch(() => undefined);
        await waitFor(async () => (await engine!.docker('ps', '-aq', '--filter', `label=com.docker.swarm.service.name=${service}`)).stdout.trim() === '' || undefined, {
          timeoutMs: 30_000,
          what: "the service's containers removed",
        }).catch(() => undefined);
        for (const n of [net, standalone]) await engine.docker('network', 'rm', n).catch(() => undefined);
        await engine.docker('swarm', 'leave', '--force').catch(() => undefined);
        await plugin?.remove();
        await engine.stop();
      }
      await stack?.stop();
      await removeDir(emptyPluginDir);
    });

    stack = await startOvnStack();
    engine = await startDockerEngine({ engine: version, pluginDir: emptyPluginDir });
    plugin = await installPlugin(engine, stack, `ovn${sfx}`, ['OVN_DOCKER_SCOPE=global', 'OVN_DOCKER_MASQUERADE=false', 'LOG_LEVEL=debug']);
    const image = await ensureBusyboxImage(engine);
    const docker = (...args: string[]) => engine!.docker(...args).then((r) => r.stdout.trim());
    const exec = (container: string, ...cmd: string[]) => docker('exec', container, ...cmd);
    const ipOf = (container: string) => docker('inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").IPAddress}}`, container);
    const pings = (from: string, to: string) => exec(from, 'ping', '-c1', '-W2', to).then((out) => /1 packets received/.test(out));

    // Global scope on a standalone engine.
    const create = docker('network', 'create', '-d', plugin.driver, '--subnet', '10.85.9.0/24', standalone);
    if (version === '20.10') {
      await t.rejects(create, /not a swarm manager/, '20.10 outside swarm refuses a network of a global-scope driver');
    } else {
      await create;
      t.match(await docker('network', 'inspect', '-f', '{{.Scope}}', standalone), 'global', '26.1 outside swarm keeps it as a global network of its own');
      await docker('network', 'rm', standalone);
    }

    await docker('swarm', 'init', '--advertise-addr', '127.0.0.1');
    const netId = await docker('network', 'create', '-d', plugin.driver, '--scope', 'swarm', '--attachable', '--subnet', '10.85.0.0/24', net);
    await docker('service', 'create', '--detach', '--name', service, '--replicas', '2', '--endpoint-mode', 'dnsrr', '--network', net, image, 'sleep', '3600');
    const tasks = await waitFor(
      async () => {
        const ids = (await docker('ps', '-q', '--filter', `label=com.docker.swarm.service.name=${service}`)).split('\n').filter(Boolean);
        return ids.length === 2 ? ids : undefined;
      },
      { timeoutMs: 90_000, what: 'two replicas running' },
    );
    const [r1, r2] = tasks as [string, string];
    const [ip1, ip2] = [await ipOf(r1), await ipOf(r2)];
    t.match(ip1, /^10\.85\.0\.\d+$/, 'replica 1 has an address of the subnet asked for');
    t.match(ip2, /^10\.85\.0\.\d+$/, 'replica 2 has an address of the subnet asked for');
    t.not(ip1, ip2, 'distinct addresses');
    t.match(await stack.nbctl('--bare', '--columns=name', 'list', 'Logical_Switch'), netId, 'the swarm network is a logical switch, named by its swarm id');

    t.ok(await pings(r1, ip2), 'replica 1 reaches replica 2 by address');
    t.ok(await pings(r2, ip1), 'replica 2 reaches replica 1 by address');
    const answers = await waitFor(
      async () => {
        const out = await exec(r1, 'nslookup', service).catch(() => '');
        return out.includes(ip1) && out.includes(ip2) ? out : undefined;
      },
      { timeoutMs: 20_000, what: `${service} resolving to both replicas` },
    );
    t.ok(answers, "the service's name resolves to both replicas");
    t.ok(await pings(r1, service), "replica 1 pings the service's name");

    // A standalone container on the attachable network reaches the service by name.
    await docker('run', '-d', '--net', net, '--name', attached, image, 'sleep', '3600');
    t.match(await ipOf(attached), /^10\.85\.0\.\d+$/, 'the attached container too');
    t.ok(await pings(attached, service), "an attached container pings the service's name");
    t.ok(await pings(attached, ip1), 'and replica 1 by address');
  });
}
