/**
 * JSON schemas of the bodies Docker sends to a remote network driver
 * (libnetwork drivers/remote/api), with the TypeScript type each one
 * validates into. Fastify checks every body against its schema before a
 * handler runs, so handlers only ever see well-formed values.
 *
 * Bounds are deliberate: ids are 64 hex (25-char swarm ids also occur),
 * strings are short, option maps are small. Anything else is refused with
 * {"Err": ...} before it can reach OVN.
 */

const networkId = { type: 'string', pattern: '^[A-Za-z0-9]{1,64}$' } as const;
const endpointId = { type: 'string', pattern: '^[0-9a-fA-F]{1,64}$' } as const;
const shortString = { type: 'string', maxLength: 256 } as const;
const cidrOrEmpty = { type: 'string', maxLength: 64, pattern: '^[0-9a-fA-F:.]*(/[0-9]{1,3})?$' } as const;
const optionsMap = { type: ['object', 'null'], maxProperties: 64 } as const;

const ipamData = {
  type: 'object',
  required: ['Pool'],
  properties: {
    AddressSpace: shortString,
    Pool: cidrOrEmpty,
    Gateway: cidrOrEmpty,
    AuxAddresses: { type: ['object', 'null'], maxProperties: 256, additionalProperties: cidrOrEmpty },
  },
} as const;

export interface IpamData {
  AddressSpace?: string;
  Pool: string;
  Gateway?: string;
  AuxAddresses?: Record<string, string> | null;
}

export type DockerOptions = Record<string, unknown> | null | undefined;

export interface CreateNetworkRequest {
  NetworkID: string;
  Options?: DockerOptions;
  IPv4Data?: IpamData[] | null;
  IPv6Data?: IpamData[] | null;
}
export const createNetworkSchema = {
  type: 'object',
  required: ['NetworkID'],
  properties: {
    NetworkID: networkId,
    Options: optionsMap,
    IPv4Data: { type: ['array', 'null'], maxItems: 16, items: ipamData },
    IPv6Data: { type: ['array', 'null'], maxItems: 16, items: ipamData },
  },
} as const;

export interface NetworkRequest {
  NetworkID: string;
}
export const networkSchema = {
  type: 'object',
  required: ['NetworkID'],
  properties: { NetworkID: networkId },
} as const;

export interface EndpointInterface {
  Address?: string;
  AddressIPv6?: string;
  MacAddress?: string;
}
export interface CreateEndpointRequest {
  NetworkID: string;
  EndpointID: string;
  Interface?: EndpointInterface | null;
  Options?: DockerOptions;
}
export const createEndpointSchema = {
  type: 'object',
  required: ['NetworkID', 'EndpointID'],
  properties: {
    NetworkID: networkId,
    EndpointID: endpointId,
    Interface: {
      type: ['object', 'null'],
      properties: {
        Address: cidrOrEmpty,
        AddressIPv6: cidrOrEmpty,
        MacAddress: { type: 'string', maxLength: 17, pattern: '^([0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5})?$' },
      },
    },
    Options: optionsMap,
  },
} as const;

export interface EndpointRequest {
  NetworkID: string;
  EndpointID: string;
}
export const endpointSchema = {
  type: 'object',
  required: ['NetworkID', 'EndpointID'],
  properties: { NetworkID: networkId, EndpointID: endpointId, Options: optionsMap },
} as const;

export interface JoinRequest {
  NetworkID: string;
  EndpointID: string;
  SandboxKey?: string;
  Options?: DockerOptions;
}
export const joinSchema = {
  type: 'object',
  required: ['NetworkID', 'EndpointID'],
  properties: {
    NetworkID: networkId,
    EndpointID: endpointId,
    SandboxKey: { type: 'string', maxLength: 4096 },
    Options: optionsMap,
  },
} as const;

export interface AllocateNetworkRequest {
  NetworkID: string;
  Options?: Record<string, string> | null;
  IPv4Data?: IpamData[] | null;
  IPv6Data?: IpamData[] | null;
}
export const allocateNetworkSchema = {
  type: 'object',
  required: ['NetworkID'],
  properties: {
    NetworkID: networkId,
    Options: { type: ['object', 'null'], maxProperties: 64, additionalProperties: shortString },
    IPv4Data: { type: ['array', 'null'], maxItems: 16, items: ipamData },
    IPv6Data: { type: ['array', 'null'], maxItems: 16, items: ipamData },
  },
} as const;

export const discoverySchema = {
  type: 'object',
  required: ['DiscoveryType'],
  properties: { DiscoveryType: { type: 'integer' }, DiscoveryData: {} },
} as const;

// ---- IpamDriver (libnetwork ipams/remote/api) ------------------------------

const stringMap = { type: ['object', 'null'], maxProperties: 64, additionalProperties: shortString } as const;
const poolId = { type: 'string', maxLength: 128 } as const;

export interface RequestPoolRequest {
  AddressSpace?: string;
  Pool?: string;
  SubPool?: string;
  Options?: Record<string, string> | null;
  V6?: boolean;
}
export const requestPoolSchema = {
  type: 'object',
  properties: { AddressSpace: shortString, Pool: cidrOrEmpty, SubPool: cidrOrEmpty, Options: stringMap, V6: { type: 'boolean' } },
} as const;

export interface ReleasePoolRequest {
  PoolID: string;
}
export const releasePoolSchema = {
  type: 'object',
  required: ['PoolID'],
  properties: { PoolID: poolId },
} as const;

export interface RequestAddressRequest {
  PoolID: string;
  Address?: string;
  Options?: Record<string, string> | null;
}
export const requestAddressSchema = {
  type: 'object',
  required: ['PoolID'],
  properties: { PoolID: poolId, Address: cidrOrEmpty, Options: stringMap },
} as const;

export interface ReleaseAddressRequest {
  PoolID: string;
  Address: string;
}
export const releaseAddressSchema = {
  type: 'object',
  required: ['PoolID', 'Address'],
  properties: { PoolID: poolId, Address: cidrOrEmpty },
} as const;
