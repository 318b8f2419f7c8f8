/**
 * DNS names of endpoints on switches that span hosts: recorded on their
 * ports, and in their switches' DNS rows (dns-rows.ts), where OVN answers
 * them for every port of the switch, on every host.
 */
import type { OvsdbClient, Replica, Row, RowChange } from '../ovsdb/index.js';
import { DNS_NAME, dnsRecordsDiffer, isOtherHosts, ownedDnsRow, spansHosts, syncDnsRecords } from './dns-rows.js';
import { externalIds } from './external-ids.js';
import { Keys, OWNER } from './keys.js';
import { networksOfHost } from './records.js';
import type { OvnEndpoints } from './endpoints.js';
import type { OvnSwitches } from './switches.js';
import { guardStillEndpoints } from './warm-holders.js';

/** What publish() did with the endpoints it found. */
export interface PublishedNames {
  /** Their names are in NB: on their ports, and in their switch's DNS row. */
  published: string[];
  /** On a switch of this host alone: nothing written. */
  local: string[];
}

export class OvnDnsNames {
  constructor(
    private readonly nb: OvsdbClient,
    private readonly switches: OvnSwitches,
    private readonly endpoints: OvnEndpoints,
  ) {}

  /**
   * Publish the names of endpoints, all in one transaction: each change to a
   * port or a DNS row costs ovn-northd < 23.09 a full recompute, so callers
   * batch. `chassis` is this host's. Names go to NB only on a switch that
   * spans hosts (or has a DNS row): on a switch of this host alone, Docker's
   * embedded DNS answers them, and they are published when another host
   * joins (joinedByOtherHosts). Returns the endpoints published, and those
   * found on switches of this host alone.
   */
  async publish(entries: { endpointId: string; names: string[] }[], chassis: string): Promise<PublishedNames> {
    const { value } = await this.nb.transaction(
      (tx, replica) => {
        const result: PublishedNames = { published: [], local: [] };
        // Per switch: the names each publishing port will have.
        const perSwitch = new Map<string, { ls: Row; ports: Map<string, string[]> }>();
        // Per switch: whether it spans hosts or has a row (a look at each of its ports, once).
        const sharedSwitches = new Map<string, boolean>();
        for (const { endpointId, names } of entries) {
          const found = this.endpoints.portOf(replica, endpointId);
          const ls = found && this.switches.switchOf(replica, found.record.networkId);
          if (!found || !ls) continue;
          const shared = sharedSwitches.get(ls._uuid) ?? (ownedDnsRow(replica, ls) !== undefined || spansHosts(replica, ls, chassis));
          sharedSwitches.set(ls._uuid, shared);
          if (!shared) {
            result.local.push(endpointId);
            continue;
          }
          result.published.push(endpointId);
          const clean = [...new Set(names.map((n) => n.toLowerCase()).filter((n) => DNS_NAME.test(n)))];
          if ((!found.record.ipv4 && !found.record.ipv6) || clean.length === 0) continue;
          const batch = perSwitch.get(ls._uuid) ?? { ls, ports: new Map<string, string[]>() };
          batch.ports.set(found.row._uuid, clean);
          perSwitch.set(ls._uuid, batch);
          // A container may end meanwhile, its port kept warm for the next one: its names must not land there.
          guardStillEndpoints(tx, found.row, endpointId, found.record.networkId);
          tx.mutate('Logical_Switch_Port', [['_uuid', '==', found.row._uuid]], [
            ['external_ids', 'delete', [Keys.dnsNames]],
            ['external_ids', 'insert', new Map([[Keys.dnsNames, clean.join(' ')]])],
          ]);
        }
        // The whole row, not only these names: it may be missing earlier ones (another host's, a write that failed).
        for (const { ls, ports } of perSwitch.values()) syncDnsRecords(tx, replica, ls, ports);
        return result;
      },
      // Hosts publishing on one switch at once (a restart of several) make each other re-run.
      { comment: `ovn-docker-driver: publish DNS names of ${entries.length} endpoint(s)`, retries: 20 },
    );
    return value;
  }

  /**
   * The switches to sync after these NB changes: those a port of another
   * host than `chassis` joined (a new port, or one new to this replica),
   * among the switches this host has a network on.
   */
  joinedByOtherHosts(replica: Replica, changes: readonly RowChange[], chassis: string): string[] {
    const joined = new Set<string>();
    for (const c of changes) {
      if (c.table !== 'Logical_Switch_Port' || !c.new || !isOtherHosts(c.new, chassis)) continue;
      if (c.old && isOtherHosts(c.old, chassis)) continue;
      joined.add(c.uuid);
    }
    // A switch that gains a port someone else inserted earlier (a resync, or two updates) shows as a switch change.
    for (const c of changes) {
      if (c.table !== 'Logical_Switch' || !c.new) continue;
      const before = new Set(Array.isArray(c.old?.ports) ? c.old.ports.map(String) : []);
      for (const uuid of Array.isArray(c.new.ports) ? c.new.ports : []) {
        if (before.has(String(uuid))) continue;
        const port = replica.get('Logical_Switch_Port', String(uuid));
        if (port && isOtherHosts(port, chassis)) joined.add(port._uuid);
      }
    }
    if (joined.size === 0) return [];
    return this.localSwitches(replica, chassis).filter((ls) => (Array.isArray(ls.ports) ? ls.ports : []).some((uuid) => joined.has(String(uuid)))).map((ls) => ls._uuid);
  }

  /** Switches this host has a network on. */
  localSwitches(replica: Replica, chassis: string): Row[] {
    return [...replica.rows('Logical_Switch')].filter((ls) => externalIds(ls).get(Keys.owner) === OWNER && networksOfHost(ls, chassis).length > 0);
  }

  /**
   * Bring the DNS rows of these switches (uuids; every switch this host has
   * a network on when undefined) in line with their ports' names, where a
   * switch spans hosts or has a row: one transaction, none when every row
   * is current. Returns how many rows it wrote.
   */
  async sync(chassis: string, switchUuids?: readonly string[]): Promise<number> {
    const candidates = (replica: Replica) =>
      (switchUuids ? switchUuids.map((uuid) => replica.get('Logical_Switch', uuid)) : this.localSwitches(replica, chassis)).filter(
        (ls): ls is Row => ls !== undefined && (ownedDnsRow(replica, ls) !== undefined || spansHosts(replica, ls, chassis)),
      );
    if (!candidates(this.nb.replica).some((ls) => dnsRecordsDiffer(this.nb.replica, ls))) return 0;
    const { value } = await this.nb.transaction(
      (tx, replica) => candidates(replica).filter((ls) => syncDnsRecords(tx, replica, ls)).length,
      // Every host on the switch may sync it at once: the guards make the later ones re-run and find it current.
      { comment: `ovn-docker-driver: sync DNS records of ${switchUuids?.length ?? 'all local'} switch(es)`, retries: 20 },
    );
    return value;
  }
}
