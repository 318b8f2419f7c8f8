/**
 * The command line: flags win over environment variables, defaults fill the
 * rest, and bad values are refused with a message naming the flag. Pure
 * logic, no processes (the key-mode warnings look at real temporary files).
 */
import t from 'tap';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { configWarnings, helpText, parseCommandLine, UsageError } from '../../src/cli/options.js';

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

const TLS = ['--ovn-nb-private-key', '/k.pem', '--ovn-nb-certificate', '/c.pem', '--ovn-nb-ca-cert', '/ca.pem'];

t.test('--ovn-nb-server-name / OVN_NB_SERVER_NAME: the name NB\'s certificate must carry', async (t) => {
  t.equal(config(TLS).nbTls?.serverName, undefined, 'by default each remote\'s own host is checked');
  t.equal(config([...TLS, '--ovn-nb-server-name', 'nb.ovn.example'], { OVN_NB_SERVER_NAME: 'x.example' }).nbTls?.serverName, 'nb.ovn.example');
  t.equal(config(TLS, { OVN_NB_SERVER_NAME: '10.0.0.5' }).nbTls?.serverName, '10.0.0.5', 'an IP address, from the environment');
  t.throws(() => config(['--ovn-nb-server-name', 'nb.ovn.example']), { message: /needs --ovn-nb-private-key/ }, 'meaningless without TLS');
  t.throws(() => config([...TLS, '--ovn-nb-server-name', 'nb ovn']), { message: /must be a DNS name or an IP address/ });
  const help = helpText();
  t.match(help, /--ovn-nb-server-name NAME\s+\[OVN_NB_SERVER_NAME\]/);
  t.match(help, /never checks the host name/, 'help says what OVS\'s own clients do');
});

t.test('warnings: TCP listening', async (t) => {
  t.same(configWarnings(config([])), [], 'none for the default setup');
  const [warning, ...rest] = configWarnings(config(['--listen', 'tcp:127.0.0.1:9555']));
  t.same(rest, []);
  t.match(warning, /--listen tcp:127\.0\.0\.1:9555: any local user can connect/);
  t.match(warning, /root privileges; prefer the default unix socket \(\/run\/docker\/plugins\/openvswitch\.sock/);
  t.match(configWarnings(config([], { OVN_DOCKER_LISTEN: 'tcp:[::1]:9555' })).join('\n'), /--listen tcp:\[::1\]:9555/);
  t.match(helpText(), /Prefer the unix socket/, '--help says so too');
});

t.test('warnings: an NB private key others may read', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ovn-test-options-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const key = async (name: string, mode: number) => {
    const file = path.join(dir, name);
    await writeFile(file, 'not really a key\n');
    await chmod(file, mode); // explicit: writeFile's mode goes through the umask
    return file;
  };
  const withKey = (file: string) =>
    configWarnings(config(['--ovn-nb-private-key', file, '--ovn-nb-certificate', '/c.pem', '--ovn-nb-ca-cert', '/ca.pem']));
  const open = await key('open.pem', 0o644);
  const warnings = withKey(open);
  t.equal(warnings.length, 1);
  t.match(warnings[0], new RegExp(`${open.replace(/[.]/g, '\\.')} is accessible to group or others \\(mode 0644\\)`));
  t.match(warnings[0], `chmod 600 ${open}`, 'names the fix');
  t.same(withKey(await key('group.pem', 0o640)).length, 1, 'group-readable counts too');
  t.same(withKey(await key('private.pem', 0o600)), [], 'mode 0600: no warning');
  t.same(withKey(path.join(dir, 'missing.pem')), [], 'a missing file is for the connection to report');
});

t.test('cleanup takes the same options, and --nb', async (t) => {
  const parsed = parseCommandLine(['cleanup', '--nb', '--bridge', 'br-x', '--name', 'ovs2'], {});
  t.equal(parsed.kind, 'cleanup');
  if (parsed.kind !== 'cleanup') return;
  t.equal(parsed.nb, true);
  t.equal(parsed.config.bridge, 'br-x');
  t.equal(parsed.config.pluginName, 'ovs2');
  const plain = parseCommandLine(['cleanup'], {});
  t.equal(plain.kind === 'cleanup' && plain.nb, false, 'host only by default');
  t.throws(() => parseCommandLine(['--nb'], {}), /--nb/, '--nb is for cleanup only');
  t.match(helpText(), /cleanup \[--nb\]/);
});

t.test('nested mode: decided at start, from --mode or the VM port flags', async (t) => {
  const byPort = config(['--vm-port', 'vm5', '--ovn-nb', 'tcp:10.0.0.1:6641'], {});
  t.equal(byPort.mode, 'nested', '--vm-port alone means nested');
  t.equal(byPort.vmPort, 'vm5');
  t.equal(byPort.bridge, 'breth0', "the VM's bridge by default");
  t.equal(byPort.gateway, 'docker', "containers go out through Docker's docker_gwbridge");
  const byNic = config([], { OVN_DOCKER_MODE: 'nested', OVN_DOCKER_VM_NIC: 'eth0', OVN_DOCKER_BRIDGE: 'br-vm' });
  t.same([byNic.mode, byNic.vmNic, byNic.vmPort, byNic.bridge], ['nested', 'eth0', undefined, 'br-vm'], 'by environment, --vm-nic, own bridge');
  const overlay = config([], {});
  t.same([overlay.mode, overlay.bridge, overlay.gateway], ['overlay', 'br-int', 'host'], 'overlay otherwise, as before');
  for (const [argv, pattern] of [
    [['--mode', 'nested'], /exactly one of --vm-port NAME .* and --vm-nic IFNAME/],
    [['--vm-port', 'a', '--vm-nic', 'eth0'], /exactly one of/],
    [['--mode', 'overlay', '--vm-port', 'a'], /--vm-port and --vm-nic are for --mode nested/],
    [['--mode', 'underlay'], /--mode must be overlay or nested/],
    [['--vm-port', 'a', '--gateway', 'host'], /--gateway host is for overlay mode/],
    [['--vm-nic', 'eth0; rm -rf /'], /invalid --vm-nic/],
    [['--vm-port', 'has space'], /invalid --vm-port/],
  ] as [string[], RegExp][]) {
    t.throws(() => parseCommandLine(argv, {}), { message: pattern }, argv.join(' '));
  }
});
