/**
 * Network links in the host namespace, through iproute2 and ethtool: the veth
 * pair each endpoint gets, and its teardown.
 */
import { readFile } from 'node:fs/promises';
import { CommandError, type Runner } from './exec.js';
import { assertIfName, InvalidArgumentError } from './names.js';
import { isReadOnly, Sysctl } from './sysctl.js';

/** A link with the requested name exists but is not the veth pair asked for. */
export class LinkConflictError extends Error {
  constructor(
    readonly link: string,
    reason: string,
  ) {
    super(`link ${link} already exists and ${reason}`);
    this.name = 'LinkConflictError';
  }
}

const MAC = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;

/** Returns the MAC in lower case, the form ip prints, so it can be compared. */
export function assertUnicastMac(mac: string, what = 'MAC address'): string {
  const lower = mac.toLowerCase();
  if (!MAC.test(lower)) throw new InvalidArgumentError(what, mac, 'not six colon-separated hex pairs');
  // The I/G bit: a multicast source address is dropped by every switch,
  // and the kernel refuses to assign one.
  if ((Number.parseInt(lower.slice(0, 2), 16) & 1) === 1) throw new InvalidArgumentError(what, mac, 'multicast');
  if (lower === '00:00:00:00:00:00') throw new InvalidArgumentError(what, mac, 'all zeros');
  return lower;
}

// ETH_MIN_MTU .. what veth accepts.
const MIN_MTU = 68;
const MAX_MTU = 65535;

function assertMtu(mtu: number): number {
  if (!Number.isInteger(mtu) || mtu < MIN_MTU || mtu > MAX_MTU) {
    throw new InvalidArgumentError('MTU', String(mtu), `not an integer in ${MIN_MTU}..${MAX_MTU}`);
  }
  return mtu;
}

/** The fields of `ip -j -d link show` that we read. */
interface IpLink {
  ifname: string;
  /** For a veth: the peer's name, when the peer is in this namespace. */
  link?: string;
  link_netnsid?: number;
  mtu?: number;
  address?: string;
  linkinfo?: { info_kind?: string };
  /** Present when an XDP program is attached. */
  xdp?: unknown;
}

function parseIpLinks(stdout: string): IpLink[] {
  const parsed: unknown = JSON.parse(stdout);
  if (!Array.isArray(parsed)) throw new Error(`ip -j link show: expected a JSON array, got ${stdout.slice(0, 200)}`);
  return parsed.filter((l): l is IpLink => typeof l === 'object' && l !== null && typeof (l as IpLink).ifname === 'string');
}

const isNoSuchDevice = (e: unknown): boolean =>
  e instanceof CommandError && /does not exist|Cannot find device/.test(e.stderr);

const isFileExists = (e: unknown): boolean => e instanceof CommandError && /File exists/.test(e.stderr);

export interface VethRequest {
  /** The host end's name. */
  host: string;
  /** The container end's name. */
  peer: string;
  mtu: number;
  /** The container end's MAC. */
  peerMac: string;
}

const BATCH_SAFE = /^[\w.-]+$/;

/** Validates a pair's names, MTU and MAC; returns the MTU and MAC as `ip` gets them. */
function checkVeth(p: VethRequest): { mtu: string; mac: string } {
  assertIfName(p.host, 'host interface name');
  assertIfName(p.peer, 'peer interface name');
  if (p.host === p.peer) throw new InvalidArgumentError('peer interface name', p.peer, 'same as the host side');
  return { mtu: String(assertMtu(p.mtu)), mac: assertUnicastMac(p.peerMac, 'peer MAC address') };
}

/**
 * One netlink request creates both ends with their final MTU and MAC, the
 * host end already up, so no other process can observe a half-configured
 * pair. The host end is an OVS port, not an interface of the host's: even on
 * the userspace datapath the kernel sees every frame on it, and with ARP on
 * it would answer a container's ARP for the gateway (an address of this
 * host) itself, taking the container's traffic past OVN.
 */
function vethAddArgs(host: string, peer: string, mtu: string, mac: string): string[] {
  return ['link', 'add', 'name', host, 'mtu', mtu, 'arp', 'off', 'up', 'type', 'veth', 'peer', 'name', peer, 'mtu', mtu, 'address', mac];
}

/** The interface names in /proc/net/dev's text: one per line after the two header lines, before the colon. */
export function parseProcNetDev(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split('\n').slice(2)) {
    const colon = line.indexOf(':');
    if (colon > 0) names.add(line.slice(0, colon).trim());
  }
  return names;
}

export class Links {
  constructor(
    private readonly runner: Runner,
    private readonly sysctl = new Sysctl(),
  ) {}

  /**
   * Names of the interfaces in the driver's namespace, without a process:
   * called often while containers start. procfs follows the reading
   * process's network namespace (sysfs follows its mount's).
   */
  async namesHere(): Promise<Set<string>> {
    return parseProcNetDev(await readFile('/proc/net/dev', 'utf8'));
  }

  async createVeth(hostName: string, peerName: string, options: { mtu: number; peerMac: string }): Promise<void> {
    const { mtu, mac } = checkVeth({ host: hostName, peer: peerName, ...options });
    try {
      await this.runner.run('ip', vethAddArgs(hostName, peerName, mtu, mac));
    } catch (e) {
      if (!isFileExists(e)) throw e;
      await this.checkExistingPair(hostName, peerName, Number(mtu), mac);
      // Someone (an admin, a partial cleanup, a driver before ARP was off) may have changed it since.
      await this.runner.run('ip', ['link', 'set', 'dev', hostName, 'arp', 'off', 'up']);
    }
    await this.disableIPv6(hostName);
  }

  /**
   * createVeth() for several pairs, in one `ip -batch` process: a refill makes
   * many at once, and every process the driver starts costs it several ms of
   * CPU, with its event loop blocked while it forks. `ip` stops at the first
   * line that fails (a name taken, a pair a crash left); then every pair goes
   * through createVeth(), which finds the pairs the batch made as its own.
   */
  async createVeths(pairs: readonly VethRequest[]): Promise<void> {
    // Every pair is checked first: one bad pair, and nothing runs.
    const lines = pairs.map((p) => {
      const { mtu, mac } = checkVeth(p);
      return `${vethAddArgs(p.host, p.peer, mtu, mac).join(' ')}\n`;
    });
    // `ip -batch` reads '#' as a comment and quotes as quoting: names with anything else go one by one.
    if (pairs.length > 1 && pairs.every((p) => BATCH_SAFE.test(p.host) && BATCH_SAFE.test(p.peer))) {
      try {
        await this.runner.run('ip', ['-batch', '-'], { input: lines.join('') });
        for (const p of pairs) await this.disableIPv6(p.host);
        return;
      } catch (e) {
        if (!(e instanceof CommandError)) throw e;
      }
    }
    for (const p of pairs) await this.createVeth(p.host, p.peer, p);
  }

  /**
   * No IPv6 on a link of ours: no link-local address, router or neighbour
   * solicitations, nor answers to a container's. Where /proc/sys is
   * read-only (the driver in a container), the link generates no addresses instead.
   */
  async disableIPv6(name: string): Promise<void> {
    assertIfName(name);
    try {
      await this.sysctl.setInterface(name, { family: 'ipv6', key: 'disable_ipv6', value: 1 });
    } catch (err) {
      if (!isReadOnly(err)) throw err;
      await this.runner.run('ip', ['link', 'set', 'dev', name, 'addrgenmode', 'none']);
      await this.runner.run('ip', ['-6', 'addr', 'flush', 'dev', name]);
    }
  }

  /**
   * IPv6 on a gateway port: none unless its network has IPv6, and then an
   * address of the driver's only, never one learnt from router advertisements.
   */
  async configureGatewayIPv6(name: string, enabled: boolean): Promise<void> {
    if (!enabled) return this.disableIPv6(name);
    await this.sysctl.setInterface(name, { family: 'ipv6', key: 'disable_ipv6', value: 0 });
    await this.sysctl.setInterface(name, { family: 'ipv6', key: 'accept_ra', value: 0 });
    await this.sysctl.setInterface(name, { family: 'ipv6', key: 'autoconf', value: 0 });
  }

  /**
   * A retried create after a crash finds its own pair; anything else with the
   * name is someone else's, and so is a pair whose MAC differs: two endpoint
   * ids that share a name prefix must not share a veth.
   */
  private async checkExistingPair(hostName: string, peerName: string, mtu: number, mac: string): Promise<void> {
    const host = await this.show(hostName);
    if (!host) throw new LinkConflictError(peerName, `is not the peer of a veth named ${hostName}`);
    if (host.linkinfo?.info_kind !== 'veth') {
      throw new LinkConflictError(hostName, `is not a veth (kind ${host.linkinfo?.info_kind ?? 'none'})`);
    }
    if (host.link_netnsid !== undefined || host.link === undefined) {
      throw new LinkConflictError(hostName, 'has its peer in another network namespace');
    }
    if (host.link !== peerName) throw new LinkConflictError(hostName, `is a veth whose peer is ${host.link}, not ${peerName}`);
    const peer = await this.show(peerName);
    if (!peer) throw new LinkConflictError(hostName, `has a peer ${peerName} that vanished`);
    const actual = { hostMtu: host.mtu, peerMtu: peer.mtu, peerMac: peer.address?.toLowerCase() };
    if (actual.hostMtu !== mtu || actual.peerMtu !== mtu || actual.peerMac !== mac) {
      throw new LinkConflictError(
        hostName,
        `differs from the request (MTU ${actual.hostMtu}/${actual.peerMtu}, peer MAC ${actual.peerMac}; wanted MTU ${mtu}, MAC ${mac})`,
      );
    }
  }

  /**
   * Whether hostName and peerName are still one veth pair, both ends in this
   * namespace, with this MTU and peer MAC and no XDP program: what a veth
   * looks like after the engine moved its container end back out (renamed
   * to peerName), so that it can serve the next container as it is. (Moving
   * a link between namespaces drops its qdiscs, and with them any tc program
   * a container with NET_ADMIN attached.) One `ip` call: this runs while the
   * engine waits for DeleteEndpoint.
   */
  async isIntactPair(hostName: string, peerName: string, options: { mtu: number; peerMac: string }): Promise<boolean> {
    assertIfName(hostName, 'host interface name');
    const mtu = assertMtu(options.mtu);
    const mac = assertUnicastMac(options.peerMac, 'peer MAC address');
    const peer = await this.show(assertIfName(peerName, 'peer interface name'));
    return (
      peer !== undefined &&
      peer.linkinfo?.info_kind === 'veth' &&
      // `link` names the other end only when it is in this namespace.
      peer.link === hostName &&
      peer.link_netnsid === undefined &&
      peer.mtu === mtu &&
      peer.address?.toLowerCase() === mac &&
      peer.xdp === undefined
    );
  }

  private async show(name: string): Promise<IpLink | undefined> {
    try {
      const { stdout } = await this.runner.run('ip', ['-j', '-d', 'link', 'show', 'dev', name]);
      return parseIpLinks(stdout)[0];
    } catch (e) {
      if (isNoSuchDevice(e)) return undefined;
      throw e;
    }
  }

  /** A link's MAC address (lower case), or undefined when there is no such link. */
  async macOf(name: string): Promise<string | undefined> {
    assertIfName(name);
    return (await this.show(name))?.address?.toLowerCase();
  }

  async disableTxChecksumOffload(name: string): Promise<void> {
    assertIfName(name);
    await this.runner.run('ethtool', ['-K', name, 'tx', 'off']);
  }

  /** Give a link (e.g. an OVS internal port) an address, an MTU, and bring it up; idempotent. */
  /** `nodad`: an IPv6 address in use at once (a gateway address every host of the network carries alike). */
  async configureAddress(name: string, cidr: string, mtu: number, options: { nodad?: boolean } = {}): Promise<void> {
    assertIfName(name);
    assertMtu(mtu);
    if (!/^[0-9a-fA-F:.]+\/[0-9]{1,3}$/.test(cidr)) throw new InvalidArgumentError('address', cidr, 'not in CIDR form');
    await this.runner.run('ip', ['addr', 'replace', cidr, 'dev', name, ...(options.nodad ? ['nodad'] : [])]);
    await this.runner.run('ip', ['link', 'set', 'dev', name, 'mtu', String(mtu), 'up']);
  }

  /** IPv4 routes of the main table, as `ip -j route` shows them ("default", a prefix, or one address). */
  async ipv4Routes(): Promise<{ dst: string; dev?: string }[]> {
    const { stdout } = await this.runner.run('ip', ['-j', '-4', 'route', 'show', 'table', 'main']);
    const parsed: unknown = JSON.parse(stdout || '[]');
    if (!Array.isArray(parsed)) throw new Error('ip -j route printed something other than a list');
    const routes: { dst: string; dev?: string }[] = [];
    for (const entry of parsed as unknown[]) {
      if (typeof entry !== 'object' || entry === null) continue;
      const { dst, dev } = entry as { dst?: unknown; dev?: unknown };
      if (typeof dst === 'string') routes.push(typeof dev === 'string' ? { dst, dev } : { dst });
    }
    return routes;
  }

  async deleteLink(name: string): Promise<boolean> {
    assertIfName(name);
    try {
      await this.runner.run('ip', ['link', 'del', 'dev', name]);
      return true;
    } catch (e) {
      if (isNoSuchDevice(e)) return false;
      throw e;
    }
  }

  async exists(name: string): Promise<boolean> {
    assertIfName(name);
    return (await this.show(name)) !== undefined;
  }

  /** Linux bridges of this namespace (Docker's networks, libvirt's, ...). */
  async bridges(): Promise<string[]> {
    const { stdout } = await this.runner.run('ip', ['-j', 'link', 'show', 'type', 'bridge']);
    return parseIpLinks(stdout || '[]').map((l) => l.ifname);
  }

  async list(): Promise<{ name: string; kind?: string }[]> {
    const { stdout } = await this.runner.run('ip', ['-j', '-d', 'link', 'show']);
    return parseIpLinks(stdout).map((l) => {
      const kind = l.linkinfo?.info_kind;
      return kind === undefined ? { name: l.ifname } : { name: l.ifname, kind };
    });
  }
}
