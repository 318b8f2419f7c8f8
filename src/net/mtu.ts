/** A container interface's MTU on an overlay of Geneve tunnels over 1500-byte links: 1500 minus Geneve's 58 bytes. */
export const GENEVE_MTU = 1442;
