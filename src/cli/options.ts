/**
 * Command-line flags and environment variables of the driver, parsed and
 * checked into a typed configuration. A flag wins over its variable.
 */
import { statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import net from 'node:net';
import { DEFAULT_CONFIG as D, type DriverConfig } from '../config.js';

interface OptionDoc {
  flag: string;
  env: string;
  value: string;
  help: string;
  default?: string;
}

const DOCS: OptionDoc[] = [
  { flag: 'name', env: 'OVN_DOCKER_PLUGIN_NAME', value: 'NAME', default: D.pluginName, help: 'Plugin name: the driver name in `docker network create -d NAME`; the socket is PLUGIN_DIR/NAME.sock.' },
  { flag: 'plugin-dir', env: 'OVN_DOCKER_PLUGIN_DIR', value: 'DIR', default: D.pluginDir, help: 'Directory of the plugin socket, where dockerd looks for plugins.' },
  { flag: 'listen', env: 'OVN_DOCKER_LISTEN', value: 'tcp:127.0.0.1:PORT', help: 'Listen on TCP on a loopback address instead of the unix socket (pair with plugins/openvswitch.spec). Prefer the unix socket: it is mode 0600, so only root (dockerd) can use it, while any local user can connect to a TCP port, and the plugin API has no authentication, so that user gets root-level control of container networking. The driver logs a warning at startup when this is set. Non-loopback addresses are refused.' },
  { flag: 'mode', env: 'OVN_DOCKER_MODE', value: 'overlay|nested', help: 'overlay: this host is an OVN chassis (ovn-controller runs here) and containers\' veths go on its integration bridge. nested: this host is a VM whose own NIC is a port of an OVN logical switch; each container\'s port is a child of the VM\'s port (parent_name) with a VLAN tag of its own, and its veth is an access port of that VLAN on the VM\'s bridge (docs/nested.md). Default: nested when --vm-port or --vm-nic is given, else overlay.' },
  { flag: 'vm-port', env: 'OVN_DOCKER_VM_PORT', value: 'NAME', help: 'Nested mode: the name of the VM\'s own Logical_Switch_Port in NB, the parent of its containers\' ports.' },
  { flag: 'vm-nic', env: 'OVN_DOCKER_VM_NIC', value: 'IFNAME', help: 'Nested mode, instead of --vm-port: find the VM\'s port in NB by the MAC address of this network interface of the VM (the NIC on the VM\'s bridge, e.g. eth0).' },
  { flag: 'bridge', env: 'OVN_DOCKER_BRIDGE', value: 'BRIDGE', default: D.bridge, help: `OVS bridge that container veths are plugged into: in overlay mode the integration bridge that ovn-controller manages; in nested mode the VM's bridge that holds its NIC (default there: ${D.nestedBridge}).` },
  { flag: 'ovn-nb', env: 'OVN_NB_DB', value: 'REMOTE', help: 'OVN Northbound database: unix:PATH, tcp:HOST:PORT, ssl:HOST:PORT, or a comma-separated list for a RAFT cluster. Default: external_ids:ovn-nb of the local Open_vSwitch row (as the original OVN driver does).' },
  { flag: 'ovn-nb-private-key', env: 'OVN_NB_PRIVATE_KEY', value: 'FILE', help: 'Client private key for an ssl: NB remote (like ovn-nbctl -p).' },
  { flag: 'ovn-nb-certificate', env: 'OVN_NB_CERTIFICATE', value: 'FILE', help: 'Client certificate for an ssl: NB remote (like ovn-nbctl -c).' },
  { flag: 'ovn-nb-ca-cert', env: 'OVN_NB_CA_CERT', value: 'FILE', help: 'CA certificate that signed the NB server certificate (like ovn-nbctl -C).' },
  { flag: 'ovn-nb-server-name', env: 'OVN_NB_SERVER_NAME', value: 'NAME', help: 'Name (DNS name or IP address) the NB server certificate must carry in its subjectAltName, for every member of a cluster; it is also sent as SNI. Default: the host of each ssl: remote, checked member by member. This is stricter than ovn-nbctl: OVS\'s stream-ssl only verifies that the chain leads to the CA and never checks the host name (it sends the host as SNI, and its --ssl-server-name, OVS 3.7 and later, changes only that SNI name).' },
  { flag: 'ovs-db', env: 'OVS_DB', value: 'REMOTE', help: 'Local Open vSwitch database used by ovs-vsctl. Default: ovs-vsctl\'s own (unix:/var/run/openvswitch/db.sock).' },
  { flag: 'mtu', env: 'OVN_DOCKER_MTU', value: 'BYTES', default: String(D.mtu), help: 'MTU of container interfaces unless a network sets -o com.docker.network.driver.mtu=N. 1442 = 1500 minus geneve overhead (58).' },
  { flag: 'scope', env: 'OVN_DOCKER_SCOPE', value: 'local|global', default: D.scope, help: 'Scope reported to Docker. A standalone engine refuses global-scope networks ("This node is not a swarm manager"), so local is the default.' },
  { flag: 'port-up-timeout', env: 'OVN_DOCKER_PORT_UP_TIMEOUT', value: 'MS', default: String(D.portUpTimeoutMs), help: 'How long Join waits for OVN to report the port up before failing the container start; 0 disables the wait.' },
  { flag: 'docker-host', env: 'OVN_DOCKER_ENGINE', value: 'unix:///PATH', default: `unix://${D.dockerSocket}`, help: 'API socket of the local Docker engine. The driver reads container names from it and publishes them in OVN DNS, so containers on other hosts resolve them. "none" disables.' },
  { flag: 'gateway', env: 'OVN_DOCKER_GATEWAY', value: 'host|docker', default: D.gateway, help: 'Egress of networks created without -o ovn.gateway=host|docker (nested mode: docker only). host: each host is the gateway of its own containers through OVN (the gateway address is bound on this host), so a container has one interface; a container that publishes ports (-p, -P) still gets Docker\'s docker_gwbridge, which publishes them. docker: every container gets a second interface on docker_gwbridge for egress, as with Docker\'s overlay driver. Recorded per network when it is created.' },
  { flag: 'masquerade', env: 'OVN_DOCKER_MASQUERADE', value: 'true|false', default: String(D.masquerade), help: 'For networks whose gateway is this host (see --gateway): turn on IP forwarding and masquerade the network\'s subnet with iptables, isolating such networks from each other.' },
  { flag: 'warm-ports', env: 'OVN_DOCKER_WARM_PORTS', value: 'N', default: String(D.warmPorts), help: 'Keep N ports per IPv4 network ready on this host (logical port, veth, OVS binding), each at an address the next container will get: the lowest free ones on networks of Docker\'s IPAM (which gives those first), addresses of the pool on networks of this plugin\'s IPAM. A container start on one need not wait for ovn-northd and ovn-controller. An endpoint that gets a warm port\'s address but cannot use the port takes the address over. 0 disables.' },
  { flag: 'warm-ports-max', env: 'OVN_DOCKER_WARM_PORTS_MAX', value: 'N', default: String(D.warmPortsMax), help: 'A network\'s warm ports grow past --warm-ports, up to N, by one for each container start that found none left (a burst: docker compose up, a reboot with --restart always containers), so that the next burst as large finds its ports ready. Each warm port is a logical port in OVN and a veth on this host.' },
  { flag: 'warm-ports-idle', env: 'OVN_DOCKER_WARM_PORTS_IDLE', value: 'SECONDS', default: String(D.warmPortsIdleMs / 1000), help: 'A network that grew extra warm ports and has had no container start for this long halves them, and again after each such period, back to --warm-ports.' },
  { flag: 'orphan-grace', env: 'OVN_DOCKER_ORPHAN_GRACE', value: 'MS', default: String(D.orphanGraceMs), help: "An endpoint of this host that the engine (--docker-host) has not known for this long is removed with its port, veth and address: what a driver killed during a container start leaves, since the engine never calls DeleteEndpoint for a start it saw fail. Networks the engine does not answer for are left alone." },
  { flag: 'log-level', env: 'LOG_LEVEL', value: 'LEVEL', default: D.logLevel, help: 'trace, debug, info, warn or error. Logs are JSON lines on stdout.' },
];

export class UsageError extends Error {}

export function helpText(): string {
  const lines = [
    'Usage: ovn-docker-driver [options]',
    '       ovn-docker-driver cleanup [--nb] [options]',
    '       ovn-docker-driver ports [options]',
    '',
    'Docker network plugin that gives containers OVN logical networks: every Docker',
    'network is an OVN logical switch, every endpoint a logical switch port, so',
    'containers on all hosts of one OVN deployment share L2 networks over geneve.',
    '',
    'Options (each also settable by the environment variable shown):',
  ];
  for (const d of DOCS) {
    lines.push(`  --${d.flag} ${d.value}`.padEnd(34) + `[${d.env}]`);
    lines.push(`      ${d.help}${d.default ? ` Default: ${d.default}.` : ''}`);
  }
  lines.push('  --help                          Show this text.');
  lines.push('  --version                       Print the version.');
  lines.push(
    '',
    'cleanup: with the driver stopped, remove everything it put on this host: its iptables',
    'chains and rules (every backend), gateway ports, the OVS ports and veths of endpoints and',
    'warm ports, and a stale plugin socket. IP forwarding stays on (Docker needs it too). The',
    'options above say where things are (--bridge, --ovs-db, --name, --plugin-dir).',
    '  --nb                            Also remove this host\'s rows from the OVN Northbound',
    '                                  database: its endpoints and warm ports, and its networks',
    '                                  (the last host on a shared network deletes the switch).',
  );
  lines.push(
    '',
    'ports: the ports this host publishes for its containers (-p, -P), with the host port each',
    'got: `docker port` shows none of a network plugin\'s. Uses --bridge, --ovs-db, --docker-host.',
  );
  lines.push('', 'Example: docker network create -d openvswitch --subnet 10.1.0.0/24 foo');
  return lines.join('\n');
}

export type ParsedCommand =
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'run'; config: DriverConfig }
  | { kind: 'cleanup'; config: DriverConfig; nb: boolean }
  | { kind: 'ports'; config: DriverConfig };

export function parseCommandLine(argv: string[], env: NodeJS.ProcessEnv): ParsedCommand {
  const cleanup = argv[0] === 'cleanup';
  const ports = argv[0] === 'ports';
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' }, version: { type: 'boolean' } };
  if (cleanup) options.nb = { type: 'boolean' };
  for (const d of DOCS) options[d.flag] = { type: 'string' };
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: cleanup || ports ? argv.slice(1) : argv, options, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message} (see --help)`);
  }
  if (values.help) return { kind: 'help' };
  if (values.version) return { kind: 'version' };
  /** What the flag or its variable says, if either is set. */
  const explicit = (flag: string): string | undefined => {
    const d = DOCS.find((x) => x.flag === flag)!;
    const v = values[flag];
    const raw = typeof v === 'string' ? v : env[d.env];
    return raw === undefined || raw === '' ? undefined : raw;
  };
  const get = (flag: string): string | undefined => explicit(flag) ?? DOCS.find((x) => x.flag === flag)!.default;

  const pluginName = get('name')!;
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(pluginName)) throw new UsageError(`invalid plugin name "${pluginName}"`);
  const pluginDir = get('plugin-dir')!;
  if (!pluginDir.startsWith('/')) throw new UsageError(`--plugin-dir must be an absolute path, not "${pluginDir}"`);
  const vmPort = get('vm-port');
  const vmNic = get('vm-nic');
  const mode = get('mode') ?? (vmPort !== undefined || vmNic !== undefined ? 'nested' : 'overlay');
  if (mode !== 'overlay' && mode !== 'nested') throw new UsageError(`--mode must be overlay or nested, not "${mode}"`);
  if (mode === 'overlay' && (vmPort !== undefined || vmNic !== undefined)) {
    throw new UsageError('--vm-port and --vm-nic are for --mode nested (a driver inside a VM)');
  }
  if (mode === 'nested' && (vmPort === undefined) === (vmNic === undefined)) {
    throw new UsageError("--mode nested needs exactly one of --vm-port NAME (the VM's logical switch port) and --vm-nic IFNAME (find it by this NIC's MAC)");
  }
  if (vmPort !== undefined && !/^[\x21-\x7e]{1,255}$/.test(vmPort)) throw new UsageError(`invalid --vm-port "${vmPort}"`);
  if (vmNic !== undefined && !/^[A-Za-z0-9_.-]{1,15}$/.test(vmNic)) throw new UsageError(`invalid --vm-nic "${vmNic}"`);
  const bridge = explicit('bridge') ?? (mode === 'nested' ? D.nestedBridge : D.bridge);
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(bridge)) throw new UsageError(`invalid bridge name "${bridge}"`);
  const scope = get('scope');
  if (scope !== 'local' && scope !== 'global') throw new UsageError(`--scope must be local or global, not "${scope}"`);
  // In a VM, containers go out through Docker's docker_gwbridge: this VM cannot be an OVN network's gateway.
  const gateway = explicit('gateway') ?? (mode === 'nested' ? 'docker' : D.gateway);
  if (gateway !== 'host' && gateway !== 'docker') throw new UsageError(`--gateway must be host or docker, not "${gateway}"`);
  if (mode === 'nested' && gateway === 'host') {
    throw new UsageError("--gateway host is for overlay mode: in nested mode containers reach out through Docker's docker_gwbridge in the VM");
  }
  const logLevel = get('log-level');
  if (!['trace', 'debug', 'info', 'warn', 'error'].includes(logLevel ?? '')) throw new UsageError(`invalid --log-level "${logLevel}"`);

  const key = get('ovn-nb-private-key');
  const cert = get('ovn-nb-certificate');
  const ca = get('ovn-nb-ca-cert');
  const tlsParts = [key, cert, ca].filter(Boolean).length;
  if (tlsParts !== 0 && tlsParts !== 3) {
    throw new UsageError('--ovn-nb-private-key, --ovn-nb-certificate and --ovn-nb-ca-cert go together');
  }
  const serverName = get('ovn-nb-server-name');
  if (serverName !== undefined && tlsParts === 0) {
    throw new UsageError('--ovn-nb-server-name is for an ssl: NB remote: it needs --ovn-nb-private-key, --ovn-nb-certificate and --ovn-nb-ca-cert');
  }
  if (serverName !== undefined && !net.isIP(serverName) && !/^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$/.test(serverName)) {
    throw new UsageError(`--ovn-nb-server-name must be a DNS name or an IP address, not "${serverName}"`);
  }

  const config: DriverConfig = {
    mode,
    vmPort,
    vmNic,
    pluginName,
    pluginDir,
    listenTcp: parseListen(get('listen')),
    bridge,
    nbRemote: get('ovn-nb'),
    nbTls: key && cert && ca ? { privateKey: key, certificate: cert, caCert: ca, ...(serverName ? { serverName } : {}) } : undefined,
    ovsDb: get('ovs-db'),
    mtu: integer(get('mtu')!, 'mtu', 1280, 65000),
    scope,
    portUpTimeoutMs: integer(get('port-up-timeout')!, 'port-up-timeout', 0, 600_000),
    logLevel: logLevel as DriverConfig['logLevel'],
    dockerSocket: parseDockerHost(get('docker-host')!),
    gateway,
    masquerade: boolean(get('masquerade')!, 'masquerade'),
    warmPorts: integer(get('warm-ports')!, 'warm-ports', 0, 64),
    warmPortsMax: integer(get('warm-ports-max')!, 'warm-ports-max', 0, 256),
    warmPortsIdleMs: integer(get('warm-ports-idle')!, 'warm-ports-idle', 1, 86_400) * 1000,
    orphanGraceMs: integer(get('orphan-grace')!, 'orphan-grace', 1000, 86_400_000),
  };
  if (ports) return { kind: 'ports', config };
  return cleanup ? { kind: 'cleanup', config, nb: values.nb === true } : { kind: 'run', config };
}

/**
 * Settings that work but weaken the host's security, each as one sentence
 * for the startup log (main.ts logs them at warn level).
 */
export function configWarnings(config: DriverConfig): string[] {
  const warnings: string[] = [];
  if (config.listenTcp) {
    const { host, port } = config.listenTcp;
    warnings.push(
      `--listen tcp:${host.includes(':') ? `[${host}]` : host}:${port}: any local user can connect to the plugin API, which has no ` +
        'authentication, and so control container networking with root privileges; prefer the default unix socket ' +
        `(${config.pluginDir}/${config.pluginName}.sock, mode 0600, root only)`,
    );
  }
  const key = config.nbTls?.privateKey;
  const mode = key === undefined ? undefined : fileMode(key);
  // Group or other bits: anyone but the owner may read (or replace) the key that proves this host to NB.
  if (key !== undefined && mode !== undefined && (mode & 0o077) !== 0) {
    warnings.push(
      `the NB private key ${key} is accessible to group or others (mode ${mode.toString(8).padStart(4, '0')}); ` +
        `make it readable by its owner alone: chmod 600 ${key}`,
    );
  }
  return warnings;
}

/** Permission bits of a file; undefined when it cannot be read (connecting reports that). */
function fileMode(file: string): number | undefined {
  try {
    return statSync(file).mode & 0o7777;
  } catch {
    return undefined;
  }
}

function integer(text: string, flag: string, min: number, max: number): number {
  if (!/^[0-9]+$/.test(text)) throw new UsageError(`--${flag} must be a whole number, not "${text}"`);
  const n = Number(text);
  if (n < min || n > max) throw new UsageError(`--${flag} must be between ${min} and ${max}, not ${n}`);
  return n;
}

function boolean(text: string, flag: string): boolean {
  if (text === 'true') return true;
  if (text === 'false') return false;
  throw new UsageError(`--${flag} must be true or false, not "${text}"`);
}

function parseDockerHost(text: string): string | undefined {
  if (text === 'none') return undefined;
  const m = /^unix:\/\/(\/.+)$/.exec(text);
  if (!m) throw new UsageError(`--docker-host must be unix:///PATH or none, not "${text}"`);
  return m[1];
}

function parseListen(text: string | undefined): DriverConfig['listenTcp'] {
  if (!text) return undefined;
  const m = /^tcp:(\[[0-9a-fA-F:]+\]|[0-9.]+):([0-9]{1,5})$/.exec(text);
  if (!m) throw new UsageError(`--listen must look like tcp:127.0.0.1:PORT, not "${text}"`);
  const host = m[1]!.replace(/^\[|\]$/g, '');
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new UsageError(`--listen port out of range: ${port}`);
  const loopback = net.isIPv4(host) ? host.startsWith('127.') : host === '::1';
  if (!loopback) {
    throw new UsageError(`--listen ${text}: only loopback addresses are allowed (the plugin API has no authentication)`);
  }
  return { host, port };
}
