/**
 * Interface names: the deterministic names the driver gives each endpoint's
 * veth pair, and the kernel's rules for any interface name we pass to a tool.
 * Pure functions only.
 */

/** An argument that must never reach a command line. */
export class InvalidArgumentError extends TypeError {
  constructor(
    readonly what: string,
    readonly value: string,
    reason: string,
  ) {
    super(`invalid ${what} ${JSON.stringify(value)}: ${reason}`);
    this.name = 'InvalidArgumentError';
  }
}

/** IFNAMSIZ is 16 bytes including the terminating NUL. */
export const MAX_IFNAME_LENGTH = 15;

/**
 * The kernel's dev_valid_name() rules, plus ':' (alias syntax to ip and
 * ifconfig) and '%' (a template: the kernel would pick the number itself).
 * Counted in bytes, since that is what IFNAMSIZ limits.
 */
export function ifNameProblem(name: string): string | undefined {
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes === 0) return 'empty';
  if (bytes > MAX_IFNAME_LENGTH) return `longer than ${MAX_IFNAME_LENGTH} bytes`;
  if (name === '.' || name === '..') return 'reserved';
  if (/[/:%\s]/u.test(name)) return "contains '/', ':', '%' or whitespace";
  // Legal to the kernel, but ethtool and ovs-vsctl would read it as an option.
  if (name.startsWith('-')) return "starts with '-'";
  // Control characters and non-ASCII are legal to the kernel but not to every
  // tool that prints or parses names; none of our names need them.
  if (!/^[\x21-\x7e]+$/.test(name)) return 'contains characters outside printable ASCII';
  return undefined;
}

export function assertIfName(name: string, what = 'interface name'): string {
  const problem = ifNameProblem(name);
  if (problem !== undefined) throw new InvalidArgumentError(what, name, problem);
  return name;
}

const HOST_PREFIX = 'ovn';
const PEER_PREFIX = 'ovc';
/** 48 bits of the endpoint id: collisions need ~16M live endpoints to be likely. */
const ID_CHARS = MAX_IFNAME_LENGTH - HOST_PREFIX.length;
const ENDPOINT_ID = /^[0-9a-f]+$/i;
const OUR_HOST_IF = new RegExp(`^${HOST_PREFIX}[0-9a-f]{${ID_CHARS}}$`);

function idPart(endpointId: string): string {
  if (!ENDPOINT_ID.test(endpointId)) throw new InvalidArgumentError('endpoint id', endpointId, 'not hexadecimal');
  if (endpointId.length < ID_CHARS) {
    throw new InvalidArgumentError('endpoint id', endpointId, `shorter than ${ID_CHARS} hex digits`);
  }
  // Docker sends lower case; normalising keeps the name stable if anyone does not.
  return endpointId.slice(0, ID_CHARS).toLowerCase();
}

/** The veth end that stays in the host namespace and is plugged into br-int. */
export function hostIfName(endpointId: string): string {
  return HOST_PREFIX + idPart(endpointId);
}

/** The veth end Docker moves into the container. */
export function peerIfName(endpointId: string): string {
  return PEER_PREFIX + idPart(endpointId);
}

/** True for names hostIfName() makes, so a restarted driver can find its leftovers. */
export function isOurHostIf(name: string): boolean {
  return OUR_HOST_IF.test(name);
}

/** The container end paired with one of our host ends (isOurHostIf). */
export function peerOfHostIf(name: string): string {
  return PEER_PREFIX + name.slice(HOST_PREFIX.length);
}
