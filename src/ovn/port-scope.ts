/**
 * Which logical switch ports this host replicates: its own (endpoints and
 * warm ports of its chassis) and every port of the switches its networks
 * use, so that memory follows this host's networks, not the deployment's.
 *
 * A switch is this host's while one of its networks is attached to it
 * (Keys.networkPrefix) or one of its pool users holds the switch's pool
 * (from RequestPool to ReleasePool, around the network's own life). Every
 * change to that set changes the monitor's conditions at once, in the
 * replica's change event, so that the next transaction waits for the
 * switch's ports (OvsdbClient.setConditions).
 */
import type { Logger, OvsdbClient, Replica, Row, RowChange } from '../ovsdb/index.js';
import { externalIds } from './external-ids.js';
import { Keys, OWNER, ownPortClauses, switchPortsClause } from './keys.js';
import { networksOfHost } from './records.js';

/** Ports keyed per transaction when an older driver's ports lack Keys.switch. */
const KEYING_BATCH = 500;

export class PortScope {
  /** Switches (by name) whose ports the monitor's conditions ask for. */
  private switches = new Set<string>();
  /** Switches with a network of this host attached. */
  private readonly attached = new Set<string>();
  /** Pools (Address_Set names) with a user on this host. */
  private readonly pools = new Set<string>();
  /** Per switch in scope: the ports checked for Keys.switch already. */
  private readonly checked = new Map<string, Set<string>>();
  private keying: Promise<void> = Promise.resolve();
  private readonly onChange = (changes: RowChange[]) => this.applyChanges(changes);
  private readonly onReady = () => this.rebuild();
  private stopped = false;

  constructor(
    private readonly nb: OvsdbClient,
    private readonly chassis: string,
    private readonly log: Logger,
  ) {}

  /** Follow the replica from now on (the client must be in sync). */
  start(): void {
    this.nb.on('change', this.onChange);
    this.nb.on('ready', this.onReady);
    this.rebuild();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.nb.off('change', this.onChange);
    this.nb.off('ready', this.onReady);
    await this.keying;
  }

  /** The switches whose ports are replicated now (for tests and logs). */
  get switchNames(): string[] {
    return [...this.switches].sort();
  }

  /** Start over from the whole replica: a new session may bring a new replica object. */
  private rebuild(): void {
    const replica = this.nb.replica;
    this.attached.clear();
    this.pools.clear();
    for (const ls of replica.rows('Logical_Switch')) if (this.attachedHere(ls)) this.attached.add(String(ls.name));
    for (const set of replica.rows('Address_Set')) if (this.usedHere(set)) this.pools.add(String(set.name));
    this.update(replica);
  }

  private applyChanges(changes: RowChange[]): void {
    let touched = false;
    const grown: string[] = [];
    for (const { table, old, new: row } of changes) {
      if (table === 'Logical_Switch') {
        if (old) this.attached.delete(String(old.name));
        if (row && this.attachedHere(row)) this.attached.add(String(row.name));
        // A port of an older driver joining a switch in scope (hosts upgraded one by one) arrives without its key.
        if (row && this.switches.has(String(row.name)) && portsOf(row).some((uuid) => !this.nb.replica.get('Logical_Switch_Port', uuid))) {
          grown.push(String(row.name));
        }
        touched = true;
      } else if (table === 'Address_Set') {
        const was = old !== undefined && this.usedHere(old);
        const is = row !== undefined && this.usedHere(row);
        if (was === is && (!old || !row || old.name === row.name)) continue;
        if (old) this.pools.delete(String(old.name));
        if (row && is) this.pools.add(String(row.name));
        touched = true;
      }
    }
    if (touched) this.update(this.nb.replica);
    if (grown.length > 0) this.keying = this.keying.then(() => this.keyPorts(grown));
  }

  private update(replica: Replica): void {
    const wanted = new Set(this.attached);
    for (const pool of this.pools) {
      for (const key of [Keys.poolV4, Keys.poolV6]) {
        for (const ls of replica.findByExternalId('Logical_Switch', key, pool)) wanted.add(String(ls.name));
      }
    }
    if (wanted.size === this.switches.size && [...wanted].every((name) => this.switches.has(name))) return;
    const added = [...wanted].filter((name) => !this.switches.has(name));
    for (const name of this.switches) if (!wanted.has(name)) this.checked.delete(name);
    this.switches = wanted;
    this.nb.setConditions('Logical_Switch_Port', [...ownPortClauses(this.chassis), ...[...wanted].sort().map(switchPortsClause)]);
    this.log.debug({ switches: this.switchNames }, "replicating the ports of this host's switches");
    if (added.length > 0) this.keying = this.keying.then(() => this.keyPorts(added));
  }

  private attachedHere(ls: Row): boolean {
    return externalIds(ls).get(Keys.owner) === OWNER && networksOfHost(ls, this.chassis).length > 0;
  }

  private usedHere(set: Row): boolean {
    const ids = externalIds(set);
    if (ids.get(Keys.owner) !== OWNER || !ids.has(Keys.pool)) return false;
    const prefix = `${this.chassis} `;
    for (const [key, value] of ids) if (value.startsWith(prefix) && key.startsWith(Keys.poolUser)) return true;
    return false;
  }

  /**
   * Ports an older driver made lack Keys.switch, so no condition finds
   * them: once the switch's ports are in, give the key to every port of
   * ours on the switch that is missing (the server skips other tenants').
   */
  private async keyPorts(names: string[]): Promise<void> {
    try {
      await this.nb.conditionsSettled();
      for (const name of names) {
        if (this.stopped || !this.switches.has(name)) continue;
        const ls = this.nb.replica.findOne('Logical_Switch', 'name', name);
        const checked = this.checked.get(name) ?? new Set<string>();
        this.checked.set(name, checked);
        const unkeyed: string[] = [];
        for (const uuid of ls ? portsOf(ls) : []) {
          if (checked.has(uuid)) continue;
          checked.add(uuid);
          const port = this.nb.replica.get('Logical_Switch_Port', uuid);
          if (!port || !externalIds(port).has(Keys.switch)) unkeyed.push(uuid);
        }
        let keyed = 0;
        for (let i = 0; i < unkeyed.length; i += KEYING_BATCH) {
          const batch = unkeyed.slice(i, i + KEYING_BATCH);
          const { result } = await this.nb.transaction(
            (tx) => {
              for (const uuid of batch) {
                // A map insert leaves a key that is there as it is: a re-run changes nothing.
                tx.mutate('Logical_Switch_Port', [['_uuid', '==', uuid], ['external_ids', 'includes', new Map([[Keys.owner, OWNER]])]], [
                  ['external_ids', 'insert', new Map([[Keys.switch, name]])],
                ]);
              }
            },
            { comment: `ovn-docker-driver: record switch ${name} on its ports` },
          );
          keyed += batch.reduce((n, _, i) => n + (result?.countOf(i) ?? 0), 0);
        }
        if (keyed > 0) this.log.info({ switch: name, ports: keyed }, 'recorded the switch on ports made by an older driver');
      }
    } catch (err) {
      // Left for the next time the switch comes into scope (a restart at the latest); the ports made here are keyed.
      this.log.warn({ err: (err as Error).message }, 'cannot record switches on older ports; other hosts may not see them until the driver restarts');
    }
  }
}

function portsOf(ls: Row): string[] {
  return Array.isArray(ls.ports) ? (ls.ports as string[]) : [];
}
