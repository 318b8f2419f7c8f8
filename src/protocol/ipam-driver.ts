/**
 * Bodies Docker sends to a remote IPAM driver (libnetwork ipams/remote/api):
 * each JSON schema, and the type of the values it lets through.
 */
import { cidrOrEmpty, shortString, stringMap } from './fields.js';
import type { FromSchema } from './from-schema.js';

const poolId = { type: 'string', maxLength: 128 } as const;

export const requestPoolSchema = {
  type: 'object',
  properties: { AddressSpace: shortString, Pool: cidrOrEmpty, SubPool: cidrOrEmpty, Options: stringMap, V6: { type: 'boolean' } },
} as const;
export type RequestPoolRequest = FromSchema<typeof requestPoolSchema>;

export const releasePoolSchema = {
  type: 'object',
  required: ['PoolID'],
  properties: { PoolID: poolId },
} as const;
export type ReleasePoolRequest = FromSchema<typeof releasePoolSchema>;

export const requestAddressSchema = {
  type: 'object',
  required: ['PoolID'],
  properties: { PoolID: poolId, Address: cidrOrEmpty, Options: stringMap },
} as const;
export type RequestAddressRequest = FromSchema<typeof requestAddressSchema>;

export const releaseAddressSchema = {
  type: 'object',
  required: ['PoolID', 'Address'],
  properties: { PoolID: poolId, Address: cidrOrEmpty },
} as const;
export type ReleaseAddressRequest = FromSchema<typeof releaseAddressSchema>;
