/**
 * VLAN tags of nested ports (containers inside a VM): each child of one
 * parent port carries a tag no other child of that parent holds, since the
 * hypervisor's ovn-controller tells the children apart by it alone.
 */
import { DomainError } from '../errors.js';
import type { Replica, Row, Transaction } from '../ovsdb/index.js';

export const MIN_TAG = 1;
export const MAX_TAG = 4095;

/** A port's VLAN tag: `tag` (set by its writer, or by ovn-northd from tag_request), else a non-zero `tag_request`. */
export function portTag(port: Row): number | undefined {
  for (const value of [port.tag, port.tag_request]) {
    if (typeof value === 'number' && value >= MIN_TAG && value <= MAX_TAG) return value;
  }
  return undefined;
}

/** Tags the children of `parent` hold or have asked for, as `replica` shows them. */
export function childTags(replica: Replica, parent: string): Set<number> {
  const used = new Set<number>();
  for (const port of replica.findBy('Logical_Switch_Port', 'parent_name', parent)) {
    for (const value of [port.tag, port.tag_request]) if (typeof value === 'number') used.add(value);
  }
  return used;
}

/**
 * The lowest tag no child of `parent` holds, guarded in `tx`: a child
 * given that tag (or asking for it) by anyone meanwhile makes the
 * transaction conflict and re-run, so two ports never share a tag.
 */
export function assignTag(tx: Transaction, replica: Replica, parent: string, avoid: ReadonlySet<number> = new Set()): number {
  const used = childTags(replica, parent);
  for (const tag of avoid) used.add(tag);
  let tag = MIN_TAG;
  while (tag <= MAX_TAG && used.has(tag)) tag++;
  if (tag > MAX_TAG) {
    throw new DomainError(
      `the VM's port ${parent} has ${MAX_TAG} container ports already, one per VLAN tag: remove unused containers first`,
      'exhausted',
      { parent },
    );
  }
  tx.guardNone('Logical_Switch_Port', [
    ['parent_name', '==', parent],
    ['tag', '==', tag],
  ]);
  tx.guardNone('Logical_Switch_Port', [
    ['parent_name', '==', parent],
    ['tag_request', '==', tag],
  ]);
  return tag;
}

/**
 * Tags chosen by this process's transactions that have not settled yet:
 * containers starting at once in one VM then pick different tags, instead
 * of all racing for the lowest free one and re-running one by one. Only an
 * optimisation: the guards of assignTag keep tags unique.
 */
class TagsInFlight {
  private readonly held = new Map<string, Set<number>>();

  /** A chooser for one transaction: call `choose` from its closure (every run); `release` once it settled. */
  chooser(): { choose(tx: Transaction, replica: Replica, parent: string): number; release(): void } {
    let mine: { parent: string; tag: number } | undefined;
    const release = () => {
      if (mine) this.held.get(mine.parent)?.delete(mine.tag);
      mine = undefined;
    };
    return {
      choose: (tx, replica, parent) => {
        release(); // a re-run chooses again
        let set = this.held.get(parent);
        if (!set) this.held.set(parent, (set = new Set()));
        const tag = assignTag(tx, replica, parent, set);
        set.add(tag);
        mine = { parent, tag };
        return tag;
      },
      release,
    };
  }
}

/** One per process: every transaction of this process that tags a port takes its chooser here. */
export const tagsInFlight = new TagsInFlight();
