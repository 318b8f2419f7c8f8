/**
 * Swarm services on the driver's networks, through the managed plugin (swarm
 * takes no legacy plugin) with OVN_DOCKER_SCOPE=global, on a single-node
 * swarm of engine 20.10 and of 26.1. Also what that scope does to a
 * standalone engine: 20.10 refuses the network, 26.1 takes it
 * (docs/swarm.md explains the choice).
 *
 * Then a two-node swarm over the two-host harness (two OVN chassis in
 * network namespaces), each engine with its firewall in its own namespace:
 * one replica per node.
 *
 * Services use --endpoint-mode dnsrr: in the default VIP mode the engine
 * balances a service's virtual address through a load-balancer endpoint per
 * node, which it gives its own overlay networks only (docs/swarm.md).
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { dockerAvailable, ensureBusyboxImage, startDockerEngine, type DockerEngine } from '../harness/docker.js';
import { installPlugin, startPluginLab, type ManagedPlugin, type PluginLab } from '../harness/managed-plugin.js';
import { makeTempDir, removeDir, waitFor } from '../harness/process.js';
import { startTwoHosts, type TwoHosts } from '../harness/two-hosts.js';

const ENGINES = ['20.10', '26.1'] as const;

/** Waits until an engine runs no container of any swarm service. */
const servicesGone = (docker: (...args: string[]) => Promise<string>) =>
  waitFor(async () => (await docker('ps', '-aq', '--filter', 'label=com.docker.swarm.service.name')) === '' || undefined, {
    timeoutMs: 30_000,
    what: "the services' containers removed",
  });

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
    const localService = `loc-${sfx}`;
    const localNet = `swl-${sfx}`;
    let lab: PluginLab | undefined;
    t.teardown(async () => {
      if (lab) {
        await lab.docker('rm', '-f', attached).catch(() => undefined);
        await lab.docker('service', 'rm', service, localService).catch(() => undefined);
        await servicesGone(lab.docker).catch(() => undefined);
        for (const n of [net, standalone, localNet]) await lab.docker('network', 'rm', n).catch(() => undefined);
        await lab.docker('swarm', 'leave', '--force').catch(() => undefined);
        await lab.stop();
      }
    });

    // The plugin's default scope first: local.
    lab = await startPluginLab(version, `ovn${sfx}`, ['OVN_DOCKER_MASQUERADE=false', 'LOG_LEVEL=debug']);
    const { stack, engine, plugin, image, docker, exec, pings } = lab;
    const ipOf = (container: string) => lab!.ipOf(container, net);

    // Local scope in swarm: the engine would hand the network to each node without its --subnet
    // (a default pool of the node's own instead); the driver refuses it and says what to do.
    await docker('swarm', 'init', '--advertise-addr', '127.0.0.1');
    await docker('network', 'create', '-d', plugin.driver, '--scope', 'swarm', '--attachable', '--subnet', '10.85.8.0/24', localNet);
    await docker('service', 'create', '--detach', '--name', localService, '--endpoint-mode', 'dnsrr', '--network', localNet, image, 'sleep', '3600');
    const refusal = await waitFor(
      async () => {
        const tasks = await docker('service', 'ps', '--no-trunc', '--format', '{{.Error}}', localService);
        return tasks.includes('OVN_DOCKER_SCOPE=global') ? tasks.split('\n')[0] : undefined;
      },
      { timeoutMs: 60_000, what: 'the task refused at local scope' },
    );
    t.match(refusal, /a swarm network needs this plugin at global scope/, 'at local scope, a swarm network is refused with what to do');
    await docker('service', 'rm', localService);
    await servicesGone(docker);
    await docker('network', 'rm', localNet);
    await docker('swarm', 'leave', '--force');

    await docker('plugin', 'disable', plugin.name);
    await docker('plugin', 'set', plugin.name, 'OVN_DOCKER_SCOPE=global');
    await docker('plugin', 'enable', plugin.name);

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
    // Swarm's manager and each node would both take a task's address from this IPAM: it refuses the
    // manager's allocator, which leaves the network unallocated and says why in the engine's log.
    const ipamNet = `ipam-${sfx}`;
    await docker('network', 'create', '-d', plugin.driver, '--ipam-driver', plugin.driver, '--scope', 'swarm', '--subnet', '10.85.7.0/24', ipamNet);
    const engineLog = () => readFile(path.join(engine.dir, 'dockerd.log'), 'utf8');
    await waitFor(async () => (await engineLog()).includes('this IPAM does not serve swarm networks') || undefined, {
      timeoutMs: 20_000,
      what: "the refusal in the engine's log",
    });
    t.equal(await docker('network', 'inspect', '-f', '{{json .IPAM.Config}}', ipamNet), 'null', "a swarm network on this plugin's IPAM is refused: no addresses, the reason in the engine's log");
    await docker('network', 'rm', ipamNet);
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

t.test('two-node swarm over two OVN chassis', async (t) => {
  const version = '26.1';
  if (!(await dockerAvailable(version))) {
    t.fail(`engine ${version} cannot be started on this machine`);
    return;
  }
  const sfx = randomBytes(3).toString('hex');
  const service = `web-${sfx}`;
  const net = `sw-${sfx}`;
  const emptyPluginDir = await makeTempDir('no-plugins');
  let lab: TwoHosts | undefined;
  const engines: DockerEngine[] = [];
  const plugins: ManagedPlugin[] = [];
  /** An engine's docker CLI, answering its trimmed stdout. */
  const on = (e: DockerEngine) => (...args: string[]) => e.docker(...args).then((r) => r.stdout.trim());
  t.teardown(async () => {
    const [manager] = engines;
    if (manager) {
      await manager.docker('service', 'rm', service).catch(() => undefined);
      for (const e of engines) await servicesGone(on(e)).catch(() => undefined);
      await manager.docker('network', 'rm', net).catch(() => undefined);
    }
    for (const e of [...engines].reverse()) await e.docker('swarm', 'leave', '--force').catch(() => undefined);
    for (const p of plugins) await p.remove();
    for (const e of engines) await e.stop();
    await lab?.stop();
    await removeDir(emptyPluginDir);
  });

  lab = await startTwoHosts();
  for (const host of lab.hosts) {
    const engine = await startDockerEngine({ engine: version, pluginDir: emptyPluginDir, netns: host.netns, firewall: true });
    engines.push(engine);
    plugins.push(await installPlugin(engine, { ovsRemote: host.ovsRemote, nbRemote: lab.nbRemote }, `ovn${sfx}`, ['OVN_DOCKER_SCOPE=global', 'LOG_LEVEL=debug']));
    await ensureBusyboxImage(engine);
  }
  const [ma, mb] = engines as [DockerEngine, DockerEngine];
  const [ha, hb] = lab.hosts;
  const [da, db] = [on(ma), on(mb)];

  await da('swarm', 'init', '--advertise-addr', ha.tunnelIp);
  const token = await da('swarm', 'join-token', '-q', 'worker');
  await db('swarm', 'join', '--advertise-addr', hb.tunnelIp, '--token', token, `${ha.tunnelIp}:2377`);
  await waitFor(async () => ((await da('node', 'ls', '-q')).split('\n').filter(Boolean).length === 2 ? true : undefined), {
    timeoutMs: 30_000,
    what: 'two nodes in the swarm',
  });
  t.pass('two-node swarm');

  // By tag: each engine's imported image has an id of its own.
  const image = 'busybox:local';
  const netId = await da('network', 'create', '-d', plugins[0]!.driver, '--scope', 'swarm', '--attachable', '--subnet', '10.86.0.0/24', net);
  await da('service', 'create', '--detach', '--name', service, '--replicas', '2', '--replicas-max-per-node', '1', '--endpoint-mode', 'dnsrr', '--network', net, image, 'sleep', '3600');
  // On a timeout, say what swarm saw of the tasks (their errors) and of the nodes.
  const replicaOn = (d: typeof da) =>
    waitFor(async () => (await d('ps', '-q', '--filter', `label=com.docker.swarm.service.name=${service}`)).split('\n').filter(Boolean)[0], {
      timeoutMs: 120_000,
      what: `a replica of ${service} running`,
    }).catch(async (err: Error) => {
      const tasks = await da('service', 'ps', '--no-trunc', service).catch((e: Error) => e.message);
      const nodes = await da('node', 'ls').catch((e: Error) => e.message);
      throw new Error(`${err.message}\ntasks:\n${tasks}\nnodes:\n${nodes}`);
    });
  const [ra, rb] = [await replicaOn(da), await replicaOn(db)];
  t.pass('one replica on each node');
  const ipOf = (d: typeof da, c: string) => d('inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").IPAddress}}`, c);
  const [ipA, ipB] = [await ipOf(da, ra), await ipOf(db, rb)];
  t.match(ipA, /^10\.86\.0\.\d+$/, "node A's replica has an address of the subnet asked for");
  t.match(ipB, /^10\.86\.0\.\d+$/, "node B's replica too");
  t.not(ipA, ipB, 'addresses unique across the cluster');
  t.match(await lab.nbctl('--bare', '--columns=name', 'list', 'Logical_Switch'), netId, 'one logical switch for the swarm network');

  const pings = (d: typeof da, from: string, to: string) => d('exec', from, 'ping', '-c1', '-W2', to).then((out) => /1 packets received/.test(out), () => false);
  // A task runs once its own chassis has its port's flows; the other chassis learns of the binding
  // through the southbound database a moment later, so the first packet across may still be dropped
  // (two-hosts.test.ts waits the same way).
  const firstAcross = async (d: typeof da, from: string, to: string, what: string) => {
    const started = Date.now();
    const ok = await waitFor(async () => (await pings(d, from, to)) || undefined, { timeoutMs: 10_000, what }).catch(() => false);
    return { ok, ms: Date.now() - started };
  };
  const aToB = await firstAcross(da, ra, ipB, 'A reaching B');
  t.ok(aToB.ok, `A reaches B across the nodes by address (after ${aToB.ms} ms)`);
  const bToA = await firstAcross(db, rb, ipA, 'B reaching A');
  t.ok(bToA.ok, `B reaches A across the nodes by address (after ${bToA.ms} ms)`);
  const named = await waitFor(
    async () => {
      const out = await da('exec', ra, 'nslookup', service).catch(() => '');
      return out.includes(ipA) && out.includes(ipB) ? out : undefined;
    },
    { timeoutMs: 30_000, what: `${service} resolving to both replicas on node A` },
  );
  t.ok(named, "the service's name resolves to the replicas of both nodes");
  // TCP across the nodes, by address, then through the service's name (either replica).
  const listen = async (d: typeof da, c: string) => {
    // -ll: a listener for each connection, its stdin never at EOF (docker.test.ts says why that matters).
    await d('exec', '-d', c, 'nc', '-ll', '-p', '7070', '-e', 'sh', '-c', 'cat >> /tmp/got');
    await waitFor(async () => (await d('exec', c, 'netstat', '-ltn')).includes(':7070') || undefined, { timeoutMs: 10_000, what: `nc listening in ${c}` });
  };
  await listen(da, ra);
  await listen(db, rb);
  const got = (d: typeof da, c: string) => d('exec', c, 'sh', '-c', 'cat /tmp/got 2>/dev/null || true');
  await da('exec', ra, 'sh', '-c', `echo hello-by-address | nc -w 5 ${ipB} 7070`);
  await waitFor(async () => (await got(db, rb)).includes('hello-by-address') || undefined, { timeoutMs: 10_000, what: 'TCP payload on B' });
  t.pass('TCP from A to B across the nodes');
  await db('exec', rb, 'sh', '-c', `echo hello-by-name | nc -w 5 ${service} 7070`);
  await waitFor(async () => ((await got(da, ra)) + (await got(db, rb))).includes('hello-by-name') || undefined, {
    timeoutMs: 10_000,
    what: "TCP through the service's name reaching a replica",
  });
  t.pass("TCP through the service's name reaches a replica");
});
