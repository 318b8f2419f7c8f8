/**
 * Per-interface IP settings of the host (net.ipv4/ipv6.conf.<if>.*), written
 * under /proc/sys/net of the driver's own network namespace.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { assertIfName } from './names.js';

export type InterfaceSetting =
  | { family: 'ipv6'; key: 'disable_ipv6' | 'accept_ra' | 'autoconf' | 'forwarding'; value: 0 | 1 }
  | { family: 'ipv4'; key: 'arp_ignore'; value: number };

export class Sysctl {
  constructor(private readonly root = '/proc/sys') {}

  /** Write one setting of an interface; a value already in place is not written again. */
  async setInterface(ifName: string, setting: InterfaceSetting): Promise<void> {
    assertIfName(ifName);
    const file = path.join(this.root, 'net', setting.family, 'conf', ifName, setting.key);
    const wanted = String(setting.value);
    if ((await readFile(file, 'utf8')).trim() === wanted) return;
    await writeFile(file, `${wanted}\n`);
  }
}

/** /proc/sys is mounted read-only (the driver runs in a container): settings must go another way. */
export function isReadOnly(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EROFS' || code === 'EACCES' || code === 'EPERM';
}
