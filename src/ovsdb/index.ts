/** Public surface of our OVSDB client (RFC 7047). */
export { OvsdbClient, type OvsdbClientOptions, type ClientEvents } from './client.js';
export type { TransactionOptions } from './transaction-runner.js';
export { Replica, type IndexSpec, type RowChange } from './replica.js';
export {
  Transaction,
  TransactionResult,
  newRowUuid,
  type Condition,
  type Mutation,
  type Operation,
} from './transaction.js';
export { parseRemotes, formatRemote, type Remote } from './remote.js';
export type { TlsFiles } from './transport.js';
export { silentLogger, type Logger } from './logger.js';
export * from './errors.js';
export * from './types.js';
