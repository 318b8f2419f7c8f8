/**
 * The host as a network's gateway: IP forwarding, masquerading of the
 * network's subnet towards the outside, and isolation between our gateway
 * interfaces (as Docker's bridge driver does), through iptables.
 */
import { readFile, writeFile } from 'node:fs/promises';
import type { Runner } from './exec.js';
import { assertIfName } from './names.js';

const COMMENT = ['-m', 'comment', '--comment', 'ovn-docker-driver'];
const IP_FORWARD = '/proc/sys/net/ipv4/ip_forward';

export class HostNat {
  constructor(
    private readonly runner: Runner,
    /** Interface-name prefix of our gateway ports, for the isolation rule. */
    private readonly prefix: string,
  ) {}

  async enableForwarding(): Promise<void> {
    // dockerd turns it on already; in a container /proc/sys is read-only, so write only when needed.
    if ((await readFile(IP_FORWARD, 'utf8')).trim() === '1') return;
    try {
      await writeFile(IP_FORWARD, '1\n');
    } catch (err) {
      throw new Error(
        `IP forwarding is off and cannot be turned on (${(err as Error).message}): ` +
          'run sysctl -w net.ipv4.ip_forward=1 on the host, or start the driver with --masquerade false',
        { cause: err },
      );
    }
  }

  /** Traffic from `subnet` leaving through another interface is masqueraded; forwarding for it is allowed. */
  async ensure(subnet: string, ifName: string): Promise<void> {
    assertIfName(ifName);
    await this.ensureRule('filter', 'FORWARD', ['-i', `${this.prefix}+`, '-o', `${this.prefix}+`, '-j', 'DROP'], 1);
    await this.ensureRule('filter', 'FORWARD', ['-i', ifName, '!', '-o', `${this.prefix}+`, '-j', 'ACCEPT'], 2);
    await this.ensureRule('filter', 'FORWARD', ['-o', ifName, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT'], 2);
    await this.ensureRule('nat', 'POSTROUTING', ['-s', subnet, '!', '-o', ifName, '-j', 'MASQUERADE']);
  }

  async remove(subnet: string, ifName: string): Promise<void> {
    assertIfName(ifName);
    await this.deleteRule('filter', 'FORWARD', ['-i', ifName, '!', '-o', `${this.prefix}+`, '-j', 'ACCEPT']);
    await this.deleteRule('filter', 'FORWARD', ['-o', ifName, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT']);
    await this.deleteRule('nat', 'POSTROUTING', ['-s', subnet, '!', '-o', ifName, '-j', 'MASQUERADE']);
  }

  private async ensureRule(table: string, chain: string, rule: string[], position?: number): Promise<void> {
    const spec = [...rule, ...COMMENT];
    try {
      await this.runner.run('iptables', ['-w', '-t', table, '-C', chain, ...spec]);
    } catch {
      const where = position === undefined ? ['-A', chain] : ['-I', chain, String(position)];
      await this.runner.run('iptables', ['-w', '-t', table, ...where, ...spec]);
    }
  }

  private async deleteRule(table: string, chain: string, rule: string[]): Promise<void> {
    await this.runner.run('iptables', ['-w', '-t', table, '-D', chain, ...rule, ...COMMENT]).catch(() => undefined);
  }
}
