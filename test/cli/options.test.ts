/**
 * The command line: flags win over environment variables, defaults fill the
 * rest, and bad values are refused with a message naming the flag. Pure
 * logic, no processes.
 */
import t from 'tap';
import { helpText, parseCommandLine, UsageError } from '../../src/cli/options.js';

const config = (argv: string[], env: NodeJS.ProcessEnv = {}) => {
  const parsed = parseCommandLine(argv, env);
  if (parsed.kind !== 'run') throw new Error(`expected a run command, got ${parsed.kind}`);
  return parsed.config;
};

t.test('defaults', async (t) => {
  const c = config([]);
  t.equal(c.pluginName, 'openvswitch');
  t.equal(c.pluginDir, '/run/docker/plugins');
  t.equal(c.bridge, 'br-int');
  t.equal(c.nbRemote, undefined, 'NB remote read from OVS when not given');
  t.equal(c.mtu, 1442);
  t.equal(c.scope, 'local');
  t.equal(c.warmPorts, 2);
  t.equal(c.masquerade, true);
  t.equal(c.gateway, 'host', 'networks route through this host unless they ask for docker_gwbridge');
  t.equal(c.dockerSocket, '/var/run/docker.sock');
});

t.test('a flag wins over its environment variable', async (t) => {
  t.equal(config([], { OVN_DOCKER_WARM_PORTS: '5' }).warmPorts, 5);
  t.equal(config(['--warm-ports', '0'], { OVN_DOCKER_WARM_PORTS: '5' }).warmPorts, 0, '0 turns warm ports off');
  t.equal(config(['--ovn-nb', 'tcp:10.0.0.1:6641'], { OVN_NB_DB: 'unix:/x' }).nbRemote, 'tcp:10.0.0.1:6641');
  t.equal(config(['--gateway', 'docker'], { OVN_DOCKER_GATEWAY: 'host' }).gateway, 'docker');
});

t.test('bad values are refused, naming the flag', async (t) => {
  const refused = (argv: string[], pattern: RegExp, env: NodeJS.ProcessEnv = {}) =>
    t.throws(() => parseCommandLine(argv, env), { message: pattern }, argv.join(' ') || JSON.stringify(env));
  refused(['--warm-ports', '65'], /--warm-ports must be between 0 and 64/);
  refused(['--warm-ports', 'many'], /--warm-ports must be a whole number/);
  refused([], /--warm-ports must be a whole number/, { OVN_DOCKER_WARM_PORTS: '-1' });
  refused(['--listen', 'tcp:0.0.0.0:5000'], /only loopback addresses are allowed/);
  refused(['--scope', 'cluster'], /--scope must be local or global/);
  refused([], /--gateway must be host or docker, not "router"/, { OVN_DOCKER_GATEWAY: 'router' });
  refused(['--ovn-nb-private-key', '/k'], /go together/);
  refused(['--no-such-flag'], /see --help/);
  t.ok(new UsageError('x') instanceof Error);
});

t.test('--help explains every option', async (t) => {
  t.same(parseCommandLine(['--help'], {}), { kind: 'help' });
  const help = helpText();
  for (const flag of ['--warm-ports', '--ovn-nb', '--masquerade', '--gateway', '--docker-host', '--port-up-timeout']) t.match(help, flag);
  t.match(help, /OVN_DOCKER_WARM_PORTS/);
});
