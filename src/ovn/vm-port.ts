/**
 * Nested mode: the VM's own logical switch port, which every container port
 * of this VM names as its parent. Found once at start-up, by name or by the
 * MAC of the VM's NIC; an operator's typo must stop the driver, not give
 * containers a parent that no chassis binds.
 */
import { DomainError } from '../errors.js';
import type { Replica, Row } from '../ovsdb/index.js';
import { externalIds } from './external-ids.js';
import { Keys } from './keys.js';
import { portAddressEntries } from './records.js';

export interface VmPort {
  name: string;
  /** Bound and up on a hypervisor now (a warning at start when not: containers cannot come up before it is). */
  up: boolean;
}

export function findVmPort(replica: Replica, by: { name: string } | { mac: string }): VmPort {
  if ('name' in by) {
    const row = replica.findOne('Logical_Switch_Port', 'name', by.name);
    if (!row) {
      throw new DomainError(`the VM's port ${by.name} is not in the OVN Northbound database: check --vm-port against \`ovn-nbctl show\``, 'not-found', {
        port: by.name,
      });
    }
    checkUsable(row);
    return { name: by.name, up: row.up === true };
  }
  const mac = by.mac.toLowerCase();
  const matches = [...replica.rows('Logical_Switch_Port')].filter((row) =>
    portAddressEntries(row).some((entry) => entry.mac.toLowerCase() === mac),
  );
  const candidates = matches.filter((row) => usable(row) === undefined);
  if (candidates.length === 1) return { name: String(candidates[0]!.name), up: candidates[0]!.up === true };
  if (candidates.length === 0) {
    const why = matches.map((row) => `${String(row.name)} (${usable(row)})`).join(', ');
    throw new DomainError(
      `no logical switch port in the OVN Northbound database has the VM's MAC ${mac}${why ? ` and can be a parent: ${why}` : ''}; ` +
        'pass --vm-port NAME instead',
      'not-found',
      { mac },
    );
  }
  throw new DomainError(
    `several logical switch ports have the VM's MAC ${mac} (${candidates.map((row) => String(row.name)).sort().join(', ')}): pass --vm-port NAME instead`,
    'conflict',
    { mac },
  );
}

function checkUsable(row: Row): void {
  const problem = usable(row);
  if (problem) throw new DomainError(`port ${String(row.name)} cannot be the VM's port: ${problem}`, 'invalid', { port: String(row.name) });
}

/** Why a port cannot be a VM's port (the parent of containers' ports), or undefined when it can. */
function usable(row: Row): string | undefined {
  if (typeof row.parent_name === 'string' && row.parent_name !== '') return `it is itself a container port (its parent is ${row.parent_name})`;
  if (typeof row.type === 'string' && row.type !== '') return `it is a "${row.type}" port, not a VM's interface`;
  if (externalIds(row).has(Keys.owner)) return 'it is a port this driver made';
  return undefined;
}
