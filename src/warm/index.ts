/** Warm ports, as the rest of the driver sees them: the interface, and the pool that implements it. */
export type { WarmPorts } from './warm-ports.js';
export { WarmPool, type WarmPoolSettings } from './warm-pool.js';
