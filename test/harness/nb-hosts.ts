/**
 * Hosts sharing one NB, for tests of the OVN model without OVN daemons: a
 * bare ovsdb-server with OVN's NB schema and one OvsdbClient per "host",
 * each with its chassis name and the model's classes over its client.
 */
import { OvsdbClient, silentLogger } from '../../src/ovsdb/index.js';
import { NB_INDEXES, NB_TABLES, nbScope } from '../../src/ovn/keys.js';
import { OvnNetworks } from '../../src/ovn/networks.js';
import { OvnPools } from '../../src/ovn/pools.js';
import { OvnWarmPorts } from '../../src/ovn/warm-ports.js';
import { PortScope } from '../../src/ovn/port-scope.js';
import { startOvsdbServer, type OvsdbServer } from './ovsdb-server.js';

export interface NbHost {
  chassis: string;
  nb: OvsdbClient;
  networks: OvnNetworks;
  warm: OvnWarmPorts;
}

export interface NbHosts {
  server: OvsdbServer;
  hosts: NbHost[];
  stop(): Promise<void>;
}

/**
 * A client of the NB database at `remote`, its replica in sync, scoped to
 * the rows the driver of `chassis` reads in `mode`, as the driver's is
 * (with the ports of the chassis's switches: port-scope.ts).
 */
export async function connectNb(remote: string, chassis: string, mode: 'overlay' | 'nested' = 'overlay'): Promise<OvsdbClient> {
  const nb = await OvsdbClient.connect({ remote, database: 'OVN_Northbound', tables: NB_TABLES, where: nbScope(mode, chassis), indexes: NB_INDEXES, requestTimeoutMs: 10_000 }, 10_000);
  if (mode === 'overlay') new PortScope(nb, chassis, silentLogger).start();
  return nb;
}

export async function startNbHosts(chassis: string[], mode: 'overlay' | 'nested' = 'overlay'): Promise<NbHosts> {
  const server = await startOvsdbServer({ schema: 'nb' });
  const hosts: NbHost[] = [];
  const stop = async () => {
    await Promise.all(hosts.map((h) => h.nb.close()));
    await server.stop();
  };
  try {
    for (const name of chassis) {
      const nb = await connectNb(server.unixRemote, name, mode);
      hosts.push({ chassis: name, nb, networks: new OvnNetworks(nb), warm: new OvnWarmPorts(nb, new OvnPools(nb)) });
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { server, hosts, stop };
}

/** startNbHosts for one test file: stopped at the file's teardown. */
export async function useNbHosts(t: { teardown(fn: () => Promise<void>): void }, chassis: string[], mode: 'overlay' | 'nested' = 'overlay'): Promise<NbHost[]> {
  const fixture = await startNbHosts(chassis, mode);
  t.teardown(() => fixture.stop());
  return fixture.hosts;
}
