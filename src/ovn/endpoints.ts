/**
 * Docker endpoints as logical switch ports: a port made for the endpoint
 * (named after it), or a warm port it adopted (warm-holders.ts). Its
 * addresses and port_security are written with it, in one transaction.
 */
import { DomainError } from '../errors.js';
import type { OvsdbClient, Replica, Row, Transaction } from '../ovsdb/index.js';
import { stripPrefix } from '../net/addressing.js';
import { removeDnsNames } from './dns-rows.js';
import { externalIds } from './external-ids.js';
import { Keys, OWNER } from './keys.js';
import { endpointPortRow, onPool, toEndpoint, type EndpointRecord, type EndpointSpec } from './records.js';
import { endpointMac, macHolders } from './switch-macs.js';
import { tagsInFlight } from './vlan-tags.js';
import type { OvnSwitches } from './switches.js';
import { AdoptedPorts, guardNoWarmClaim, releaseAdoptedInPortSet, replaceStalePorts, takeOverWarmPorts } from './warm-holders.js';

export class OvnEndpoints {
  private readonly adopted: AdoptedPorts;

  constructor(
    private readonly nb: OvsdbClient,
    private readonly switches: OvnSwitches,
  ) {
    this.adopted = new AdoptedPorts(nb);
  }

  /** An endpoint's port: one made for it (endpoint id on the port), or a warm port it adopted (recorded in the pool). */
  portOf(replica: Replica, endpointId: string): { row: Row; record: EndpointRecord } | undefined {
    const own = replica.findByExternalId('Logical_Switch_Port', Keys.endpointId, endpointId)[0];
    if (own) return { row: own, record: toEndpoint(own) };
    const adopted = this.adopted.of(replica, endpointId);
    const row = adopted && replica.findOne('Logical_Switch_Port', 'name', adopted.port);
    return row ? { row, record: { ...toEndpoint(row), networkId: adopted.networkId, endpointId } } : undefined;
  }

  find(endpointId: string): EndpointRecord | undefined {
    return this.portOf(this.nb.replica, endpointId)?.record;
  }

  /** The endpoints this driver made that the replica holds: this host's, and any on the switches of its networks (port-scope.ts). */
  list(): EndpointRecord[] {
    const replica = this.nb.replica;
    const out: EndpointRecord[] = [];
    for (const row of replica.rows('Logical_Switch_Port')) {
      const ids = externalIds(row);
      if (ids.get(Keys.owner) === OWNER && ids.has(Keys.endpointId)) out.push(toEndpoint(row));
    }
    for (const endpointId of this.adopted.endpointIds(replica)) {
      const found = this.portOf(replica, endpointId);
      if (found) out.push(found.record);
    }
    return out;
  }

  /**
   * Create the logical switch port of an endpoint, with addresses and
   * port_security written in the same transaction, unless it exists.
   */
  async ensure(spec: EndpointSpec): Promise<{ endpoint: EndpointRecord; replaced: string[] }> {
    let replaced: string[] = [];
    const tags = tagsInFlight.chooser();
    const { value } = await this.nb.transaction(
      (tx, replica) => {
        const found = this.portOf(replica, spec.endpointId);
        const existing = found?.row ?? replica.findOne('Logical_Switch_Port', 'name', spec.endpointId);
        if (existing) {
          const record = found?.record ?? toEndpoint(existing);
          if (record.networkId !== spec.networkId) {
            throw new DomainError(
              `endpoint ${spec.endpointId} already exists on network ${record.networkId}, not ${spec.networkId}`,
              'conflict',
              { endpointId: spec.endpointId, networkId: record.networkId },
            );
          }
          return record;
        }
        const ls = this.switches.switchOf(replica, spec.networkId);
        if (!ls) throw new DomainError(`network ${spec.networkId} does not exist in OVN`, 'not-found', { networkId: spec.networkId });
        // Docker's MAC (--mac-address) is checked against these ports: one inserted meanwhile makes this re-run.
        // (Before the takeover below, whose mutation of `ports` a later wait would see.)
        if (spec.mac) tx.verify('Logical_Switch', ls, ['ports']);
        const ipv4 = spec.ipv4 && stripPrefix(spec.ipv4);
        const takenOver = ipv4 ? takeOverWarmPorts(tx, replica, ls, ipv4) : new Set<string>();
        replaced = replaceStalePorts(tx, replica, ls, spec, takenOver);
        if (ipv4 && !onPool(ls)) guardNoWarmClaim(tx, replica, ls, ipv4, spec.endpointId);
        const tag = spec.parent ? tags.choose(tx, replica, spec.parent) : undefined;
        insertPort(tx, ls, spec, endpointMac(spec, macHolders(replica, ls, takenOver)), tag);
        return undefined;
      },
      // A VM's containers starting at once may each lose a race for a tag to another host's (or a restarted driver's) write.
      { comment: `ovn-docker-driver: CreateEndpoint ${spec.endpointId}`, ...(spec.parent ? { retries: 20 } : {}) },
    ).finally(() => tags.release());
    if (value) return { endpoint: value, replaced: [] };
    const created = this.find(spec.endpointId);
    if (!created) throw new Error(`logical switch port for endpoint ${spec.endpointId} vanished right after creation`);
    return { endpoint: created, replaced };
  }

  /** Remove an endpoint's port from its switch. Returns false when there was none. */
  async delete(endpointId: string): Promise<boolean> {
    const { value } = await this.nb.transaction(
      (tx, replica) => {
        const found = this.portOf(replica, endpointId);
        if (!found) return false;
        const port = found.row;
        releaseAdoptedInPortSet(tx, port, found.record);
        // A port is non-root: removing the reference deletes it; a direct delete would break referential integrity.
        for (const ls of replica.rows('Logical_Switch')) {
          if (Array.isArray(ls.ports) && ls.ports.includes(port._uuid)) {
            tx.mutate('Logical_Switch', [['_uuid', '==', ls._uuid]], [['ports', 'delete', [port._uuid]]]);
            removeDnsNames(tx, replica, ls, port);
          }
        }
        return true;
      },
      // Names it published are rebuilt from the DNS row as read: other hosts publishing meanwhile make this re-run.
      { comment: `ovn-docker-driver: DeleteEndpoint ${endpointId}`, retries: 20 },
    );
    return value;
  }

  /** Resolve once OVN reports the port up (bound and its flows installed). */
  async waitPortUp(portName: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    await this.nb.replica.waitFor(
      () => {
        const port = this.nb.replica.findOne('Logical_Switch_Port', 'name', portName);
        if (!port) throw new DomainError(`logical switch port ${portName} was deleted while waiting for it to come up`, 'not-found', { port: portName });
        return port.up === true ? true : undefined;
      },
      { timeoutMs, what: `logical switch port ${portName} to come up`, ...(signal ? { signal } : {}) },
    );
  }
}

function insertPort(tx: Transaction, ls: Row, spec: EndpointSpec, mac: string, tag: number | undefined): void {
  // Guards: the name must still be free, and the switch must still exist, or the port would be garbage-collected.
  tx.guardAbsent('Logical_Switch_Port', 'name', spec.endpointId);
  tx.verify('Logical_Switch', ls, ['name']);
  const port = tx.insert('Logical_Switch_Port', endpointPortRow(spec, String(ls.name), mac, tag));
  tx.mutate('Logical_Switch', [['_uuid', '==', ls._uuid]], [['ports', 'insert', [port]]]);
}
