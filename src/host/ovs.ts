/**
 * The local Open vSwitch database through `ovs-vsctl`. Each method is one
 * ovs-vsctl invocation, which ovs-vsctl commits as one OVSDB transaction: a
 * port is never seen on br-int without its iface-id (ovn-controller would
 * otherwise bind nothing to it, or the wrong thing).
 */
import { CommandError, type Runner } from './exec.js';
import { assertUnicastMac } from './links.js';
import { assertIfName, InvalidArgumentError } from './names.js';

export interface PortAttachment {
  bridge: string;
  /** Host-side interface name; port and interface share it. */
  port: string;
  /** external_ids:iface-id, the OVN logical switch port name. */
  ifaceId: string;
  /** external_ids:attached-mac, the MAC inside the container. */
  attachedMac: string;
  /** Further keys the driver owns, e.g. ovn-docker:endpoint. */
  externalIds: Record<string, string>;
  /**
   * An OVS internal interface (a device in the host's namespace that OVS
   * creates) with `attachedMac` as its own MAC, instead of an existing link.
   * The call then waits for ovs-vswitchd, so the device exists on return.
   */
  internal?: boolean;
  /** An access port of this VLAN (nested mode: the container's tag on the VM's bridge). */
  tag?: number;
}

export interface OvsPort {
  /** The interface name (for our ports, also the port name). */
  port: string;
  externalIds: Map<string, string>;
  /** null until ovs-vswitchd assigns one; -1 if it could not open the device. */
  ofport: number | null;
}

export class BridgeNotFoundError extends Error {
  constructor(
    readonly bridge: string,
    options?: { cause?: unknown },
  ) {
    super(`Open vSwitch bridge ${bridge} does not exist`, options);
    this.name = 'BridgeNotFoundError';
  }
}

/**
 * ovs-vsctl died on its own --timeout (SIGALRM). For a write this is usually
 * after the commit, while waiting for ovs-vswitchd to apply it: the change may
 * be in the database. Every write here is idempotent, so retrying is safe.
 */
export class OvsTimeoutError extends Error {
  constructor(
    readonly timeoutSec: number,
    options: { cause: CommandError },
  ) {
    super(
      `ovs-vsctl gave up after ${timeoutSec} s (${options.cause.args.join(' ')}); ` +
        'the database or ovs-vswitchd did not answer, a write may have been committed without being applied',
      options,
    );
    this.name = 'OvsTimeoutError';
  }
}

// ---- ovs-vsctl's --data=json cells ------------------------------------------

export type OvsAtom = string | number | boolean;
export type OvsCell = OvsAtom | OvsAtom[] | Map<OvsAtom, OvsAtom>;

function decodeAtom(json: unknown): OvsAtom {
  if (typeof json === 'string' || typeof json === 'number' || typeof json === 'boolean') return json;
  if (Array.isArray(json) && json.length === 2 && (json[0] === 'uuid' || json[0] === 'named-uuid') && typeof json[1] === 'string') {
    return json[1];
  }
  throw new Error(`not an OVSDB atom: ${JSON.stringify(json)}`);
}

/**
 * Decodes one cell of `ovs-vsctl --format=json --data=json` output:
 * ["map",[[k,v],…]] → Map, ["set",[…]] → array, ["uuid",u] → u, atoms as is.
 * ovs-vsctl prints a one-element set as the bare atom, so a set-typed column
 * should be read with ovsCellAsSet.
 */
export function decodeOvsCell(json: unknown): OvsCell {
  if (Array.isArray(json) && json.length === 2 && Array.isArray(json[1])) {
    if (json[0] === 'map') {
      const map = new Map<OvsAtom, OvsAtom>();
      for (const pair of json[1] as unknown[]) {
        if (!Array.isArray(pair) || pair.length !== 2) throw new Error(`not an OVSDB map pair: ${JSON.stringify(pair)}`);
        map.set(decodeAtom(pair[0]), decodeAtom(pair[1]));
      }
      return map;
    }
    if (json[0] === 'set') return (json[1] as unknown[]).map(decodeAtom);
  }
  return decodeAtom(json);
}

export function ovsCellAsSet(json: unknown): OvsAtom[] {
  const cell = decodeOvsCell(json);
  if (cell instanceof Map) throw new Error(`expected a set, got a map: ${JSON.stringify(json)}`);
  return Array.isArray(cell) ? cell : [cell];
}

export function ovsCellAsStringMap(json: unknown): Map<string, string> {
  const cell = decodeOvsCell(json);
  // ovs-vsctl prints an empty map as ["map",[]]; an empty set means the same.
  if (Array.isArray(cell) && cell.length === 0) return new Map();
  if (!(cell instanceof Map)) throw new Error(`expected a map, got ${JSON.stringify(json)}`);
  const out = new Map<string, string>();
  for (const [k, v] of cell) {
    if (typeof k !== 'string' || typeof v !== 'string') throw new Error(`expected a string map, got ${JSON.stringify(json)}`);
    out.set(k, v);
  }
  return out;
}

/** An optional scalar (min 0, max 1) is an empty set when unset. */
export function ovsCellAsOptional(json: unknown): OvsAtom | null {
  const set = ovsCellAsSet(json);
  if (set.length > 1) throw new Error(`expected at most one value, got ${JSON.stringify(json)}`);
  return set[0] ?? null;
}

type OvsRow = Record<string, unknown>;

/**
 * One JSON table per listing command, one per line: JSON escapes newlines
 * inside strings, so splitting on lines cannot cut a document.
 */
function parseTables(stdout: string): OvsRow[][] {
  return stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const table = JSON.parse(line) as { headings?: unknown; data?: unknown };
      if (!Array.isArray(table.headings) || !Array.isArray(table.data)) throw new Error(`unexpected ovs-vsctl table: ${line.slice(0, 200)}`);
      const headings = table.headings as string[];
      return (table.data as unknown[][]).map((row) => Object.fromEntries(headings.map((h, i) => [h, row[i]])));
    });
}

// ---- quoting ----------------------------------------------------------------

/**
 * ovs-vsctl splits `column:key=value` on its own delimiters (':', '=', ',',
 * braces, brackets, whitespace) unless a token is double-quoted, and unescapes
 * a quoted token as a JSON string. So a JSON string literal is exactly the
 * quoting it understands: `"` and `\` escaped, control characters as \n, \u0001.
 */
function ovsQuote(value: string): string {
  return JSON.stringify(value);
}

// A lone surrogate has no UTF-8 form; OVSDB strings are UTF-8.
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function assertOvsdbString(value: string, what: string, { allowEmpty = true } = {}): string {
  if (typeof value !== 'string') throw new InvalidArgumentError(what, String(value), 'not a string');
  if (!allowEmpty && value === '') throw new InvalidArgumentError(what, value, 'empty');
  // argv is NUL-terminated: the rest of the value would silently vanish.
  if (value.includes('\0')) throw new InvalidArgumentError(what, value, 'contains NUL');
  if (LONE_SURROGATE.test(value)) throw new InvalidArgumentError(what, value, 'not valid Unicode');
  return value;
}

const RESERVED_KEYS = new Set(['iface-id', 'attached-mac', 'iface-status']);

// ---- the wrapper --------------------------------------------------------------

export interface OvsOptions {
  runner: Runner;
  /** An OVSDB remote such as unix:/var/run/openvswitch/db.sock; ovs-vsctl's default otherwise. */
  db?: string;
  timeoutSec?: number;
  /**
   * Return from writes once the database committed them, without waiting
   * for ovs-vswitchd to apply them (ovs-vsctl --no-wait). For callers that
   * wait for a later signal anyway (OVN reporting the port up): saves a
   * vswitchd round per call. ofport is then not yet known on return.
   */
  noWait?: boolean;
}

export class Ovs {
  private readonly runner: Runner;
  private readonly db: string | undefined;
  private readonly timeoutSec: number;
  private readonly writeFlags: string[];

  constructor(options: OvsOptions) {
    this.runner = options.runner;
    this.writeFlags = options.noWait ? ['--no-wait'] : [];
    this.db = options.db;
    this.timeoutSec = options.timeoutSec ?? 5;
    if (!Number.isInteger(this.timeoutSec) || this.timeoutSec < 1) {
      throw new InvalidArgumentError('ovs-vsctl timeout', String(this.timeoutSec), 'not a whole number of seconds >= 1');
    }
    if (this.db !== undefined) assertOvsdbString(this.db, 'OVSDB remote', { allowEmpty: false });
  }

  async attachPort(a: PortAttachment): Promise<void> {
    await this.attachPorts([a]);
  }

  /**
   * attachPort() for several ports in one ovs-vsctl transaction (a refill
   * plugs many: one process instead of one each). All or none are attached.
   */
  async attachPorts(list: readonly PortAttachment[]): Promise<void> {
    if (list.length === 0) return;
    const commands = list.flatMap((a) => attachCommands(a));
    // An internal interface is waited for (see PortAttachment.internal), and so is a batch with one.
    const flags = list.some((a) => a.internal) ? [] : this.writeFlags;
    const bridges = new Set(list.map((a) => a.bridge));
    await this.vsctl([...flags, ...commands], bridges.size === 1 ? list[0]!.bridge : undefined);
  }

  /**
   * Set (a string) or remove (undefined) one external_ids key of an
   * interface, leaving the other keys alone. False when there is no such
   * interface: its port went, and with it what the key recorded.
   */
  async setInterfaceExternalId(iface: string, key: string, value: string | undefined): Promise<boolean> {
    assertIfName(iface, 'interface name');
    assertOvsdbString(key, 'external_ids key', { allowEmpty: false });
    if (RESERVED_KEYS.has(key)) throw new InvalidArgumentError('external_ids key', key, 'set by attachPort itself');
    const change =
      value === undefined
        ? ['remove', 'Interface', iface, 'external_ids', ovsQuote(key)]
        : ['set', 'Interface', iface, `external_ids:${ovsQuote(key)}=${ovsQuote(assertOvsdbString(value, `external_ids:${key} value`))}`];
    // The read and the write are one transaction: "no such interface" is exact.
    const stdout = await this.vsctl(['--no-wait', '--', '--if-exists', 'get', 'Interface', iface, 'name', '--', '--if-exists', ...change]);
    return stdout.trim() !== '';
  }

  /**
   * Resolves true when it deleted the port, false when there was no such port
   * (even if the bridge is gone too: teardown must be repeatable). A port
   * that exists on another bridge, or on a bridge that is gone, is an error.
   */
  async detachPort(bridge: string, port: string): Promise<boolean> {
    assertIfName(bridge, 'bridge name');
    assertIfName(port, 'port name');
    // The read and the delete are one transaction, so "deleted something" is
    // exact even when two callers race.
    const stdout = await this.vsctl(
      [...this.writeFlags, '--', '--if-exists', 'get', 'Port', port, 'name', '--', '--if-exists', 'del-port', bridge, port],
      bridge,
    );
    return stdout.trim() !== '';
  }

  async listPorts(bridge: string): Promise<OvsPort[]> {
    assertIfName(bridge, 'bridge name');
    // Bridge → Port → Interface in one read, so the three are consistent.
    const stdout = await this.vsctl(
      [
        '--format=json', '--data=json',
        '--', '--columns=ports', 'list', 'Bridge', bridge,
        '--', '--columns=_uuid,interfaces', 'list', 'Port',
        '--', '--columns=_uuid,name,external_ids,ofport', 'list', 'Interface',
      ],
      bridge,
    );
    const [bridges, ports, ifaces] = parseTables(stdout);
    if (!bridges || !ports || !ifaces) throw new Error(`ovs-vsctl printed ${parseTables(stdout).length} tables, expected 3`);
    const [row] = bridges;
    if (!row) throw new BridgeNotFoundError(bridge);
    const portIds = new Set(ovsCellAsSet(row.ports));
    const ifaceIds = new Set(ports.filter((p) => portIds.has(decodeAtom(p._uuid))).flatMap((p) => ovsCellAsSet(p.interfaces)));
    return ifaces
      .filter((i) => ifaceIds.has(decodeAtom(i._uuid)))
      .map((i) => {
        const ofport = ovsCellAsOptional(i.ofport);
        return {
          port: String(decodeAtom(i.name)),
          externalIds: ovsCellAsStringMap(i.external_ids),
          ofport: typeof ofport === 'number' ? ofport : null,
        };
      })
      .sort((x, y) => (x.port < y.port ? -1 : x.port > y.port ? 1 : 0));
  }

  async datapathType(bridge: string): Promise<string> {
    assertIfName(bridge, 'bridge name');
    const stdout = await this.vsctl(['--format=json', '--data=json', '--columns=datapath_type', 'list', 'Bridge', bridge], bridge);
    const row = parseTables(stdout)[0]?.[0];
    if (!row) throw new BridgeNotFoundError(bridge);
    return String(decodeAtom(row.datapath_type));
  }

  async openvswitchExternalIds(): Promise<Map<string, string>> {
    const stdout = await this.vsctl(['--format=json', '--data=json', '--columns=external_ids', 'list', 'Open_vSwitch']);
    const row = parseTables(stdout)[0]?.[0];
    // No row: nobody ran `ovs-vsctl init` yet; an empty map says the same to callers.
    return row ? ovsCellAsStringMap(row.external_ids) : new Map();
  }

  private async vsctl(args: readonly string[], bridge?: string): Promise<string> {
    const argv = [`--timeout=${this.timeoutSec}`, ...(this.db === undefined ? [] : [`--db=${this.db}`]), ...args];
    try {
      // Our kill timer is a backstop: ovs-vsctl's own SIGALRM should fire first.
      const { stdout } = await this.runner.run('ovs-vsctl', argv, { timeoutMs: this.timeoutSec * 1000 + 2000 });
      return stdout;
    } catch (e) {
      if (!(e instanceof CommandError)) throw e;
      if (e.signal === 'SIGALRM') throw new OvsTimeoutError(this.timeoutSec, { cause: e });
      if (bridge !== undefined && (e.stderr.includes(`no bridge named ${bridge}`) || e.stderr.includes(`no row "${bridge}" in table Bridge`))) {
        throw new BridgeNotFoundError(bridge, { cause: e });
      }
      throw e;
    }
  }
}

/** Validates one attachment; returns its ovs-vsctl commands: the port, its interface's keys, its VLAN tag. */
function attachCommands(a: PortAttachment): string[] {
  assertIfName(a.bridge, 'bridge name');
  assertIfName(a.port, 'port name');
  assertOvsdbString(a.ifaceId, 'iface-id', { allowEmpty: false });
  const mac = assertUnicastMac(a.attachedMac, 'attached MAC');
  const ids: [string, string][] = [
    ['iface-id', a.ifaceId],
    ['attached-mac', mac],
    ['iface-status', 'active'],
  ];
  for (const [key, value] of Object.entries(a.externalIds)) {
    assertOvsdbString(key, 'external_ids key', { allowEmpty: false });
    if (RESERVED_KEYS.has(key)) throw new InvalidArgumentError('external_ids key', key, 'set by attachPort itself');
    ids.push([key, assertOvsdbString(value, `external_ids:${key} value`)]);
  }
  // Key by key, not the whole map: ovn-controller writes its own keys
  // (ovn-installed) to the same column, and they must survive a re-attach.
  const sets = ids.map(([k, v]) => `external_ids:${ovsQuote(k)}=${ovsQuote(v)}`);
  if (a.internal) sets.push('type=internal', `mac=${ovsQuote(mac)}`);
  if (a.tag !== undefined && !(Number.isInteger(a.tag) && a.tag >= 1 && a.tag <= 4095)) {
    throw new InvalidArgumentError('VLAN tag', String(a.tag), 'must be a whole number from 1 to 4095');
  }
  // Set on every attach, in the same transaction: a port re-used from before a crash gets the tag it has now.
  const vlan = a.tag === undefined ? [] : ['--', 'set', 'Port', a.port, `tag=${a.tag}`];
  return ['--', '--may-exist', 'add-port', a.bridge, a.port, '--', 'set', 'Interface', a.port, ...sets, ...vlan];
}
