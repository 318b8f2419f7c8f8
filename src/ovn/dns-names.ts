/**
 * DNS names of endpoints, published in their switches' DNS rows (dns-rows.ts):
 * OVN answers them for every port of the switch, on every host.
 */
import type { OvsdbClient, Row } from '../ovsdb/index.js';
import { DNS_NAME, publishedNames, writeDnsRecords } from './dns-rows.js';
import { Keys } from './keys.js';
import type { OvnEndpoints } from './endpoints.js';
import type { OvnSwitches } from './switches.js';
import { guardStillEndpoints } from './warm-holders.js';

export class OvnDnsNames {
  constructor(
    private readonly nb: OvsdbClient,
    private readonly switches: OvnSwitches,
    private readonly endpoints: OvnEndpoints,
  ) {}

  /**
   * Publish the names of endpoints, all in one transaction: on OVN < 23.09
   * each change to a DNS row costs ovn-northd a full recompute, so callers
   * batch. Returns the endpoints found.
   */
  async publish(entries: { endpointId: string; names: string[] }[]): Promise<string[]> {
    const { value } = await this.nb.transaction(
      (tx, replica) => {
        const published: string[] = [];
        // Per switch: the names whose records change, and the names each publishing port will have.
        const perSwitch = new Map<string, { ls: Row; names: Set<string>; ports: Map<string, string[]> }>();
        for (const { endpointId, names } of entries) {
          const found = this.endpoints.portOf(replica, endpointId);
          const ls = found && this.switches.switchOf(replica, found.record.networkId);
          if (!found || !ls) continue;
          published.push(endpointId);
          const clean = [...new Set(names.map((n) => n.toLowerCase()).filter((n) => DNS_NAME.test(n)))];
          if ((!found.record.ipv4 && !found.record.ipv6) || clean.length === 0) continue;
          const batch = perSwitch.get(ls._uuid) ?? { ls, names: new Set<string>(), ports: new Map<string, string[]>() };
          // Names the port published before and no longer does are rebuilt too, without its address.
          for (const name of [...publishedNames(found.row), ...clean]) batch.names.add(name);
          batch.ports.set(found.row._uuid, clean);
          perSwitch.set(ls._uuid, batch);
          // A container may end meanwhile, its port kept warm for the next one: its names must not land there.
          guardStillEndpoints(tx, found.row, endpointId, found.record.networkId);
          tx.mutate('Logical_Switch_Port', [['_uuid', '==', found.row._uuid]], [
            ['external_ids', 'delete', [Keys.dnsNames]],
            ['external_ids', 'insert', new Map([[Keys.dnsNames, clean.join(' ')]])],
          ]);
        }
        for (const { ls, names, ports } of perSwitch.values()) writeDnsRecords(tx, replica, ls, names, ports);
        return published;
      },
      // Hosts publishing on one switch at once (a restart of several) make each other re-run.
      { comment: `ovn-docker-driver: publish DNS names of ${entries.length} endpoint(s)`, retries: 20 },
    );
    return value;
  }
}
