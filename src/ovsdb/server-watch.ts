/**
 * Which server the session may stay on: it watches our database's row in
 * _Server (leader, quorum, Raft index) for as long as the connection lasts
 * and, once the server is not fit (server-status.ts judges), closes the
 * connection with the reason, so that the client moves on to the next
 * remote. This is how a RAFT leader change moves the client to the new
 * leader.
 */
import { OvsdbError } from './errors.js';
import type { Logger } from './logger.js';
import type { MonitorUpdates } from './monitor-updates.js';
import { Replica } from './replica.js';
import type { JsonRpcConnection } from './rpc.js';
import { parseSchema } from './schema.js';
import { readServerRow, rejectReason, type ServerDbStatus } from './server-status.js';

const SERVER_MONITOR = 'server';

export class ServerWatch {
  /** Replica of our database's row in _Server (leader, quorum, Raft index). */
  private serverReplica: Replica | undefined;
  /** The highest Raft index seen, on any connection: a lagging member is refused. */
  private minIndex = 0;

  constructor(
    private readonly database: string,
    private readonly leaderOnly: boolean,
    private readonly log: Logger,
  ) {}

  /** Monitor our database's row in _Server and refuse servers that are not fit (leader, quorum, staleness). */
  async watch(conn: JsonRpcConnection, updates: MonitorUpdates): Promise<ServerDbStatus> {
    const schema = parseSchema(await conn.request('get_schema', ['_Server']));
    const replica = new Replica(schema, ['Database']);
    this.serverReplica = replica;
    updates.hold(SERVER_MONITOR, (_method, params) => this.apply(conn, params));
    const reply = await conn.request('monitor_cond', [
      '_Server',
      SERVER_MONITOR,
      { Database: [{ where: [['name', '==', this.database]] }] },
    ]);
    replica.applyUpdates2(reply);
    updates.release(SERVER_MONITOR);
    return this.check(conn);
  }

  private apply(conn: JsonRpcConnection, params: unknown[]): void {
    this.serverReplica?.applyUpdates2(params[1]);
    try {
      this.check(conn);
    } catch {
      // check closed the connection with the reason; the session moves on.
    }
  }

  /** Returns the status when acceptable; otherwise closes the connection with the reason and throws it. */
  private check(conn: JsonRpcConnection): ServerDbStatus {
    const row = this.serverReplica ? [...this.serverReplica.rows('Database')][0] : undefined;
    const status = row ? readServerRow(row) : undefined;
    const reason = status ? rejectReason(status, this.leaderOnly, this.minIndex) : `server has no _Server row for ${this.database}`;
    if (reason || !status) {
      const error = new OvsdbError(`${conn.remote}: ${reason}`);
      this.log.info({ remote: conn.remote, reason }, 'moving to another OVSDB server');
      conn.close(error);
      throw error;
    }
    if (status.index !== undefined) this.minIndex = Math.max(this.minIndex, status.index);
    return status;
  }
}
