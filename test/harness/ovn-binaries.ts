/**
 * Which OVS/OVN daemons and schemas the harness runs: the host's own (Debian
 * 12: OVS 3.1, OVN 23.03), or, with OVN_TEST_ROOT=DIR, those of a Debian 13
 * root built by scripts/debian13-ovn-root.sh (OVS 3.5, OVN 25.03). The one
 * place that decides it; ovsdb-server.ts, ovn-stack.ts, two-hosts.ts and
 * nested-vm.ts ask here. Clients (ovs-vsctl, ovn-nbctl, ovsdb-client,
 * ovs-appctl) stay the host's either way, as do the driver's own calls: they
 * speak the OVSDB protocol and unixctl, which are the compatibility under test.
 *
 * Trixie's binaries need glibc 2.38, so they run through the root's own
 * dynamic loader with the root's libraries, in the host's filesystem view: the
 * harness's unix sockets, temp dirs and namespaces need no bind mounts. The
 * loader is executed through a symlink named after the daemon (the kernel's
 * comm is the executed file's name), so a daemon is still "ovs-vswitchd" to
 * /proc/PID/comm (the datapath check in ovn-stack.ts), ps and pgrep; with
 * --detach the pidfile holds the daemon's own pid as before, since the loader
 * runs the program in its own process.
 */
import { execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync, lstatSync, mkdirSync, readlinkSync, symlinkSync } from 'node:fs';
import path from 'node:path';

export type OvnTool = 'ovsdb-server' | 'ovsdb-tool' | 'ovn-northd' | 'ovn-controller' | 'ovs-vswitchd';
export type OvnSchema = 'nb' | 'sb' | 'vswitch';

export interface OvnBinaries {
  /** undefined: the host's packages. */
  readonly root: string | undefined;
  /** For test output: which binaries, and their versions where known. */
  readonly description: string;
  /** The argv that runs tool with args, through the root's loader if there is a root. */
  command(tool: OvnTool, args: readonly string[]): { cmd: string; args: string[] };
  schema(name: OvnSchema): string;
}

export const ROOT_ENV = 'OVN_TEST_ROOT';

/** Where each tool and schema sits inside a Debian root (the host's, or trixie's). */
const TOOL_PATHS: Record<OvnTool, string> = {
  'ovsdb-server': 'usr/sbin/ovsdb-server',
  'ovsdb-tool': 'usr/bin/ovsdb-tool',
  'ovn-northd': 'usr/bin/ovn-northd',
  'ovn-controller': 'usr/bin/ovn-controller',
  // Under update-alternatives in trixie: usr/sbin/ovs-vswitchd -> /etc/alternatives/…
  'ovs-vswitchd': 'usr/sbin/ovs-vswitchd',
};
const SCHEMA_PATHS: Record<OvnSchema, string> = {
  nb: 'usr/share/ovn/ovn-nb.ovsschema',
  sb: 'usr/share/ovn/ovn-sb.ovsschema',
  vswitch: 'usr/share/openvswitch/vswitch.ovsschema',
};
const LIB_DIR = 'usr/lib/x86_64-linux-gnu';
const LOADER = `${LIB_DIR}/ld-linux-x86-64.so.2`;
/** Symlinks to the loader, one per tool, made in the root on first use. */
const LINK_DIR = '.ovn-test-bin';

/** The host's packages, exactly as the harness always ran them (PATH lookup). */
export const hostBinaries: OvnBinaries = {
  root: undefined,
  description: 'the host\'s OVS/OVN packages',
  command: (tool, args) => ({ cmd: tool, args: [...args] }),
  schema: (name) => `/${SCHEMA_PATHS[name]}`,
};

/**
 * rel (relative to root) with every symlink followed inside root, as a chroot
 * would: an absolute target such as /etc/alternatives/ovs-vswitchd is the
 * root's, not the host's.
 */
export function resolveInRoot(root: string, rel: string): string {
  let pending = rel.split('/').filter(Boolean);
  let at = root;
  for (let hops = 0; pending.length > 0; ) {
    const part = pending.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      if (at !== root) at = path.dirname(at);
      continue;
    }
    const next = path.join(at, part);
    if (!lstatSync(next, { throwIfNoEntry: false })?.isSymbolicLink()) {
      at = next;
      continue;
    }
    if (++hops > 40) throw new Error(`${path.join(root, rel)}: too many symlinks`);
    const target = readlinkSync(next);
    if (target.startsWith('/')) at = root;
    pending = [...target.split('/').filter(Boolean), ...pending];
  }
  return at;
}

class RootBinaries implements OvnBinaries {
  readonly description: string;
  private readonly tools: Record<OvnTool, string>;
  private readonly libPath: string;
  private readonly links: string;

  constructor(readonly root: string) {
    const fail = (why: string): never => {
      throw new Error(
        `${ROOT_ENV}=${root} is set but unusable: ${why}. ` +
          `Build the root with \`scripts/debian13-ovn-root.sh ${root}\`, or unset ${ROOT_ENV} to test the host's OVS/OVN.`,
      );
    };
    if (!existsSync(path.join(root, '.complete'))) fail('no .complete in it (missing, or an unfinished build)');
    const resolved = (rel: string): string => {
      const p = resolveInRoot(root, rel);
      try {
        accessSync(p, constants.R_OK);
      } catch {
        fail(`${rel} is missing`);
      }
      return p;
    };
    const loader = resolved(LOADER);
    this.libPath = resolved(LIB_DIR);
    this.tools = Object.fromEntries(Object.entries(TOOL_PATHS).map(([tool, rel]) => [tool, resolved(rel)])) as Record<OvnTool, string>;
    for (const rel of Object.values(SCHEMA_PATHS)) resolved(rel);
    this.links = path.join(root, LINK_DIR);
    // Relative, so that a moved root still works.
    const target = path.relative(this.links, loader);
    try {
      mkdirSync(this.links, { recursive: true });
      for (const tool of Object.keys(TOOL_PATHS)) {
        const link = path.join(this.links, tool);
        // Test files start in parallel: another may have made it a moment ago.
        if (lstatSync(link, { throwIfNoEntry: false }) === undefined) {
          try {
            symlinkSync(target, link);
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
          }
        }
        if (readlinkSync(link) !== target) fail(`${link} does not point at ${target}`);
      }
    } catch (e) {
      if (e instanceof Error && e.message.startsWith(ROOT_ENV)) throw e;
      fail(`cannot make the loader links in ${this.links}: ${String(e)}`);
    }
    const version = (tool: OvnTool): string => {
      const { cmd, args } = this.command(tool, ['--version']);
      try {
        return execFileSync(cmd, args, { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] }).split('\n')[0]!.trim();
      } catch (e) {
        const err = e as { stderr?: string; message: string };
        return fail(`${tool} --version failed: ${(err.stderr ?? '').trim() || err.message}`);
      }
    };
    this.description = `${ROOT_ENV}=${root}: ${version('ovn-northd')}, ${version('ovs-vswitchd')}`;
  }

  command(tool: OvnTool, args: readonly string[]): { cmd: string; args: string[] } {
    return { cmd: path.join(this.links, tool), args: ['--library-path', this.libPath, this.tools[tool], ...args] };
  }

  schema(name: OvnSchema): string {
    return resolveInRoot(this.root, SCHEMA_PATHS[name]);
  }
}

let chosen: OvnBinaries | undefined;

/**
 * The binaries this test process uses, decided once from OVN_TEST_ROOT. A set
 * but unusable root throws (with what to do) rather than quietly testing the
 * host's versions instead.
 */
export function ovnBinaries(): OvnBinaries {
  if (chosen) return chosen;
  chosen = binariesFor(process.env[ROOT_ENV]);
  return chosen;
}

/** The host's binaries for no root (or ''), else the root's, checked now. */
export function binariesFor(root: string | undefined): OvnBinaries {
  return root === undefined || root === '' ? hostBinaries : new RootBinaries(path.resolve(root));
}
