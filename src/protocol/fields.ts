/**
 * Schema pieces both plugin APIs use. Bounds are deliberate: strings are
 * short and option maps small, so that anything else is refused with
 * {"Err": ...} before it can reach OVN.
 */
export const shortString = { type: 'string', maxLength: 256 } as const;
export const cidrOrEmpty = { type: 'string', maxLength: 64, pattern: '^[0-9a-fA-F:.]*(/[0-9]{1,3})?$' } as const;
/**
 * Values of a string map: -o and --ipam-opt values (CreateNetwork takes up to
 * 1024 characters of those too), and from engine 29 on a container's name in
 * RequestAddress: Docker sets no limit on names, and 256 is within reach.
 */
const optionValue = { type: 'string', maxLength: 1024 } as const;
export const stringMap = { type: ['object', 'null'], maxProperties: 64, additionalProperties: optionValue } as const;
