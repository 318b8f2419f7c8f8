/** Moved to src/net/mac.ts (not OVN-specific); this re-export goes once nothing imports it from here. */
export * from '../net/mac.js';
