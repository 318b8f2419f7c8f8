/**
 * Per-interface IP settings of the host (net.ipv4/ipv6.conf.<if>.*), written
 * under /proc/sys/net of the driver's own network namespace.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Runner } from './exec.js';
import { assertIfName } from './names.js';

export type InterfaceSetting =
  | { family: 'ipv6'; key: 'disable_ipv6' | 'accept_ra' | 'autoconf' | 'forwarding'; value: 0 | 1 }
  | { family: 'ipv4'; key: 'arp_ignore'; value: number }
  /** Packets with a 127.0.0.0/8 source or destination may leave or enter through the interface (ports published on loopback). */
  | { family: 'ipv4'; key: 'route_localnet'; value: 0 | 1 };

export class Sysctl {
  /**
   * `runner`: read and write through it (`cat`, `tee`) instead of this
   * process's own files: /proc/sys/net is that of the namespace of whoever
   * opens it, so this is how tests reach a namespace of their own.
   */
  constructor(
    private readonly root = '/proc/sys',
    private readonly runner?: Runner,
  ) {}

  /** Write one setting of an interface; a value already in place is not written again. */
  async setInterface(ifName: string, setting: InterfaceSetting): Promise<void> {
    assertIfName(ifName);
    const file = path.join(this.root, 'net', setting.family, 'conf', ifName, setting.key);
    const wanted = String(setting.value);
    if ((await this.read(file)).trim() === wanted) return;
    await this.write(file, `${wanted}\n`);
  }

  /** Whether the host forwards packets of a family (IPv6: net.ipv6.conf.all.forwarding). */
  async forwarding(family: 'ipv4' | 'ipv6'): Promise<boolean> {
    const file = path.join(this.root, 'net', ...(family === 'ipv4' ? ['ipv4', 'ip_forward'] : ['ipv6', 'conf', 'all', 'forwarding']));
    return (await this.read(file).catch(() => '0')).trim() === '1';
  }

  /** Turn IPv4 forwarding on (net.ipv4.ip_forward); not written when it is on already. */
  async enableIPv4Forwarding(): Promise<void> {
    const file = path.join(this.root, 'net', 'ipv4', 'ip_forward');
    if ((await this.read(file)).trim() === '1') return;
    await this.write(file, '1\n');
  }

  private async read(file: string): Promise<string> {
    if (!this.runner) return readFile(file, 'utf8');
    return (await this.runner.run('cat', [file])).stdout;
  }

  private async write(file: string, text: string): Promise<void> {
    if (!this.runner) return writeFile(file, text);
    await this.runner.run('tee', [file], { input: text });
  }
}

/** /proc/sys is mounted read-only (the driver runs in a container): settings must go another way. */
export function isReadOnly(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EROFS' || code === 'EACCES' || code === 'EPERM';
}
