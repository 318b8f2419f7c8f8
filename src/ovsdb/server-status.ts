/**
 * Whether a server is an acceptable place to read and write a database,
 * judged from its `_Server.Database` row the way the OVS C client does
 * (lib/ovsdb-cs.c ovsdb_cs_check_server_db__).
 */
import type { Row } from './types.js';

export interface ServerDbStatus {
  model: string;
  connected: boolean;
  leader: boolean;
  /** Raft log index; only for clustered databases. */
  index: number | undefined;
  hasSchema: boolean;
  clusterId: string | undefined;
}

export function readServerRow(row: Row): ServerDbStatus {
  return {
    model: typeof row.model === 'string' ? row.model : 'standalone',
    connected: row.connected === true,
    leader: row.leader === true,
    index: typeof row.index === 'number' ? row.index : undefined,
    hasSchema: typeof row.schema === 'string' && row.schema.length > 0,
    clusterId: typeof row.cid === 'string' ? row.cid : undefined,
  };
}

/**
 * Returns why the server must not be used, or undefined when it is fine.
 * `minIndex` is the highest Raft index seen before, so that reconnecting to
 * a lagging member never takes the replica back in time.
 */
export function rejectReason(status: ServerDbStatus, leaderOnly: boolean, minIndex: number): string | undefined {
  const { model } = status;
  if (model === 'clustered' || model === 'relay') {
    if (!status.hasSchema) return `${model} database has not joined its cluster yet`;
    if (!status.connected) return `${model} database is not connected to its cluster (no quorum)`;
  }
  if (leaderOnly) {
    if (model === 'relay') return 'a relay is never the leader and this client writes (leader-only)';
    if (!status.leader) return 'server is not the cluster leader';
  }
  if (model === 'clustered' && status.index !== undefined && status.index < minIndex) {
    return `server's data (index ${status.index}) is older than data already seen (index ${minIndex})`;
  }
  return undefined;
}
