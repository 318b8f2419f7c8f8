/**
 * When is a container's port ready for its first packet? OVN says so in two
 * places: ovn-controller writes external_ids:ovn-installed=true on the local
 * OVS Interface once the port's flows are installed on this chassis, and
 * ovn-northd then copies the binding's state to Logical_Switch_Port.up in
 * NB. Both mean the same; `up` lags by one ovn-northd round, which on a
 * large NB (full recompute, OVN < 23.09) is hundreds of milliseconds. Join
 * waits for whichever comes first. In nested mode there is no ovn-controller
 * in the VM, so no ovn-installed: the hypervisor's binding, seen as `up` in
 * NB, is the only signal.
 */
import type { OvsdbClient } from '../ovsdb/index.js';
import { DomainError } from '../errors.js';
import type { OvnNetworks } from './networks.js';

export type ReadySignal = 'ovn-installed' | 'up';

export class PortReadiness {
  constructor(
    private readonly networks: OvnNetworks,
    /** A replica of the local Open_vSwitch database's Interface table, if available. */
    private readonly localOvs: OvsdbClient | undefined,
  ) {}

  /** Whether ovn-controller has installed the port's flows, as far as the local replica shows now. */
  installed(hostIf: string): boolean {
    if (!this.localOvs?.isReady) return false;
    const ids = this.localOvs.replica.findOne('Interface', 'name', hostIf)?.external_ids;
    return ids instanceof Map && ids.get('ovn-installed') === 'true';
  }

  /** Whether the port is ready now: ovn-installed where a local replica shows it, else `up` in NB. */
  isReady(portName: string, hostIf: string): boolean {
    if (this.localOvs?.isReady) return this.installed(hostIf);
    return this.networks.replica.findOne('Logical_Switch_Port', 'name', portName)?.up === true;
  }

  async wait(portName: string, hostIf: string, timeoutMs: number): Promise<ReadySignal> {
    const done = new AbortController();
    const up = this.networks.waitPortUp(portName, timeoutMs, done.signal).then(() => 'up' as const);
    // A port deleted meanwhile (taken over, its network gone) will never be ready: fail now, not at the timeout.
    const deleted = up.then(
      () => new Promise<never>(() => undefined),
      (err: unknown) => {
        if (err instanceof DomainError && err.code === 'not-found') throw err;
        return new Promise<never>(() => undefined);
      },
    );
    const waits: Promise<ReadySignal>[] = [up];
    if (this.localOvs?.isReady) {
      const replica = this.localOvs.replica;
      waits.push(
        replica
          .waitFor(
            () => (this.installed(hostIf) ? true : undefined),
            { timeoutMs, signal: done.signal, what: `ovn-installed on interface ${hostIf}` },
          )
          .then(() => 'ovn-installed' as const),
      );
    }
    try {
      return await Promise.race([Promise.any(waits), deleted]);
    } catch (err) {
      // Every wait failed: report the NB one, which names the port.
      throw err instanceof AggregateError ? (err.errors[0] as Error) : err;
    } finally {
      done.abort();
    }
  }
}
