/** Moved to src/net/addressing.ts (not OVN-specific); this re-export goes once src/warm imports it from there. */
export * from '../net/addressing.js';
