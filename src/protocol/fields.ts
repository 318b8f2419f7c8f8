/**
 * Schema pieces both plugin APIs use. Bounds are deliberate: strings are
 * short and option maps small, so that anything else is refused with
 * {"Err": ...} before it can reach OVN.
 */
export const shortString = { type: 'string', maxLength: 256 } as const;
export const cidrOrEmpty = { type: 'string', maxLength: 64, pattern: '^[0-9a-fA-F:.]*(/[0-9]{1,3})?$' } as const;
export const stringMap = { type: ['object', 'null'], maxProperties: 64, additionalProperties: shortString } as const;
