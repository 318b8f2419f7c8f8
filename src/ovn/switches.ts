/**
 * Docker networks as OVN logical switches. A network of Docker's IPAM has a
 * switch of its own; networks on a pool of our IPAM (any host's) attach to
 * the pool's one switch, each by a key of its own on it.
 */
import { DomainError } from '../errors.js';
import type { OvsdbClient, Replica, Row } from '../ovsdb/index.js';
import { ownedDnsRow } from './dns-rows.js';
import { externalIds } from './external-ids.js';
import { gatewayPort } from './gateway-port.js';
import { Keys, OWNER } from './keys.js';
import { portSetName } from './port-sets.js';
import {
  attachedNetworks,
  attachmentIds,
  attachmentKeys,
  networkExternalIds,
  networksOfHost,
  toNetwork,
  type NetworkRecord,
  type NetworkSpec,
  type SubnetSpec,
} from './records.js';

export class OvnSwitches {
  /** Docker network id -> switch uuid, rebuilt when the replica moved on. */
  private attachments = new Map<string, string>();
  private attachmentsSeqno = -1;
  private attachmentsReplica: Replica | undefined;

  constructor(private readonly nb: OvsdbClient) {}

  /** The switch a Docker network is attached to, as `replica` shows it. */
  switchOf(replica: Replica, networkId: string): Row | undefined {
    if (replica !== this.attachmentsReplica || replica.seqno !== this.attachmentsSeqno) {
      // Networks are few and change rarely: a full scan after each update is cheap and never stale.
      this.attachments = new Map();
      for (const row of replica.rows('Logical_Switch')) {
        if (externalIds(row).get(Keys.owner) !== OWNER) continue;
        for (const id of attachedNetworks(row)) this.attachments.set(id, row._uuid);
      }
      this.attachmentsReplica = replica;
      this.attachmentsSeqno = replica.seqno;
    }
    const uuid = this.attachments.get(networkId);
    return uuid ? replica.get('Logical_Switch', uuid) : undefined;
  }

  find(networkId: string): NetworkRecord | undefined {
    const row = this.switchOf(this.nb.replica, networkId);
    return row ? toNetwork(row, networkId) : undefined;
  }

  /**
   * Create the logical switch of a network unless it exists (same id). A
   * network on a pool of our IPAM attaches to the pool's switch when another
   * host made it already.
   */
  async ensure(spec: NetworkSpec): Promise<NetworkRecord> {
    const attachment = attachmentIds(spec);
    await this.nb.transaction(
      (tx, replica) => {
        if (this.switchOf(replica, spec.networkId)) return;
        const shared = poolSwitch(replica, spec);
        if (shared) {
          checkSameSubnets(toNetwork(shared, spec.networkId), spec);
          tx.verify('Logical_Switch', shared, ['name']);
          tx.mutate('Logical_Switch', [['_uuid', '==', shared._uuid]], [
            ['external_ids', 'insert', attachment],
          ]);
          return;
        }
        // A pool's switch is named after the pool, so two hosts creating it at once collide on the guard.
        const name = spec.pools?.v4 ?? spec.pools?.v6 ?? spec.networkId;
        tx.guardAbsent('Logical_Switch', 'name', name);
        const ids = new Map([...networkExternalIds(spec), ...attachment]);
        const gateway = gatewayPort(name, spec);
        if (gateway) tx.guardAbsent('Logical_Switch_Port', 'name', gateway.name);
        tx.insert('Logical_Switch', {
          name,
          external_ids: ids,
          other_config: new Map([['mcast_snoop', 'false']]),
          ports: gateway ? [tx.insert('Logical_Switch_Port', gateway.row)] : [],
        });
      },
      { comment: `ovn-docker-driver: CreateNetwork ${spec.networkId}` },
    );
    // The switch is this host's now: its ports come into the replica (port-scope.ts) before the network is used.
    await this.nb.conditionsSettled();
    const created = this.find(spec.networkId);
    if (!created) throw new Error(`logical switch for network ${spec.networkId} vanished right after creation`);
    return created;
  }

  /**
   * Detach a network from its switch; the last network out deletes the
   * switch (and every port left on it). Returns false when there was none.
   */
  async delete(networkId: string): Promise<boolean> {
    const { value } = await this.nb.transaction(
      (tx, replica) => {
        const row = this.switchOf(replica, networkId);
        if (!row) return false;
        const others = attachedNetworks(row).filter((id) => id !== networkId);
        if (others.length > 0) {
          tx.mutate('Logical_Switch', [['_uuid', '==', row._uuid]], [
            ['external_ids', 'delete', attachmentKeys(networkId)],
          ]);
        } else {
          // Guard: a host attaching right now must not lose its switch.
          tx.verify('Logical_Switch', row, ['external_ids']);
          tx.delete('Logical_Switch', [['_uuid', '==', row._uuid]]);
          // DNS rows and Address_Sets are root rows: they would outlive the switch.
          const dns = ownedDnsRow(replica, row);
          if (dns) tx.delete('DNS', [['_uuid', '==', dns._uuid]]);
          if (replica.findOne('Address_Set', 'name', portSetName(String(row.name)))) {
            tx.delete('Address_Set', [['name', '==', portSetName(String(row.name))]]);
          }
        }
        return true;
      },
      { comment: `ovn-docker-driver: DeleteNetwork ${networkId}` },
    );
    return value;
  }

  /** Docker networks of this host (by chassis) that are attached to our switches. */
  localNetworkIds(chassis: string): string[] {
    return [...this.nb.replica.rows('Logical_Switch')].flatMap((row) => networksOfHost(row, chassis));
  }
}

/** The switch of the network's pool, if some host made it. */
function poolSwitch(replica: Replica, spec: NetworkSpec): Row | undefined {
  if (spec.pools?.v4) {
    const row = replica.findByExternalId('Logical_Switch', Keys.poolV4, spec.pools.v4)[0];
    if (row) return row;
  }
  if (spec.pools?.v6) return replica.findByExternalId('Logical_Switch', Keys.poolV6, spec.pools.v6)[0];
  return undefined;
}

/** A host attaching to a pool's switch must mean the same network: same subnets. */
function checkSameSubnets(existing: NetworkRecord, spec: NetworkSpec): void {
  const same = (a: SubnetSpec[], b: SubnetSpec[]) =>
    a.map((x) => x.subnet).sort().join(' ') === b.map((x) => x.subnet).sort().join(' ');
  if (!same(existing.ipv4, spec.ipv4) || !same(existing.ipv6, spec.ipv6)) {
    const show = (n: { ipv4: SubnetSpec[]; ipv6: SubnetSpec[] }) => [...n.ipv4, ...n.ipv6].map((x) => x.subnet).join(', ');
    throw new DomainError(
      `the pool's logical switch ${existing.name} carries subnets ${show(existing)}, not ${show(spec)}; ` +
        'create the network with the same --subnet options on every host',
      'conflict',
      { networkId: spec.networkId, switch: existing.name },
    );
  }
}
