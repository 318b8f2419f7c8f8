/**
 * Bodies Docker sends to a remote network driver (libnetwork
 * drivers/remote/api): each JSON schema, and the type of the values it lets
 * through. Fastify checks every body against its schema before a handler
 * runs. Ids are up to 64 hex (25-char swarm ids also occur).
 */
import { cidrOrEmpty, shortString, stringMap } from './fields.js';
import type { FromSchema } from './from-schema.js';

const networkId = { type: 'string', pattern: '^[A-Za-z0-9]{1,64}$' } as const;
const endpointId = { type: 'string', pattern: '^[0-9a-fA-F]{1,64}$' } as const;
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
export type IpamData = FromSchema<typeof ipamData>;
const ipamDataList = { type: ['array', 'null'], maxItems: 16, items: ipamData } as const;

/** Options as the engine passes them: absent, null, or any JSON values by name. */
export type DockerOptions = FromSchema<typeof optionsMap> | undefined;

export const createNetworkSchema = {
  type: 'object',
  required: ['NetworkID'],
  properties: { NetworkID: networkId, Options: optionsMap, IPv4Data: ipamDataList, IPv6Data: ipamDataList },
} as const;
export type CreateNetworkRequest = FromSchema<typeof createNetworkSchema>;

/**
 * Engine 28+ (when GetCapabilities says GwAllocChecker), before any IPAM
 * call of a network create: the Options CreateNetwork will carry.
 */
export const gwAllocCheckSchema = {
  type: 'object',
  properties: { Options: optionsMap },
} as const;
export type GwAllocCheckRequest = FromSchema<typeof gwAllocCheckSchema>;

export const networkSchema = {
  type: 'object',
  required: ['NetworkID'],
  properties: { NetworkID: networkId },
} as const;
export type NetworkRequest = FromSchema<typeof networkSchema>;

const endpointInterface = {
  type: ['object', 'null'],
  properties: {
    Address: cidrOrEmpty,
    AddressIPv6: cidrOrEmpty,
    MacAddress: { type: 'string', maxLength: 17, pattern: '^([0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5})?$' },
  },
} as const;
export type EndpointInterface = NonNullable<FromSchema<typeof endpointInterface>>;

export const createEndpointSchema = {
  type: 'object',
  required: ['NetworkID', 'EndpointID'],
  properties: { NetworkID: networkId, EndpointID: endpointId, Interface: endpointInterface, Options: optionsMap },
} as const;
export type CreateEndpointRequest = FromSchema<typeof createEndpointSchema>;

// Options is accepted (the engine may send it) but not part of the type: no handler reads it.
export const endpointSchema = {
  type: 'object',
  required: ['NetworkID', 'EndpointID'],
  properties: { NetworkID: networkId, EndpointID: endpointId, Options: optionsMap },
} as const;
export type EndpointRequest = Omit<FromSchema<typeof endpointSchema>, 'Options'>;
/** ProgramExternalConnectivity: an endpoint and the container's options (its port map, read by src/publish/port-map.ts). */
export type ProgramRequest = FromSchema<typeof endpointSchema>;

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
export type JoinRequest = FromSchema<typeof joinSchema>;

// Sent by a swarm manager when a network is created: CreateNetwork's body, but its options are all strings.
export const allocateNetworkSchema = {
  ...createNetworkSchema,
  properties: { ...createNetworkSchema.properties, Options: stringMap },
} as const;
export type AllocateNetworkRequest = FromSchema<typeof allocateNetworkSchema>;

export const discoverySchema = {
  type: 'object',
  required: ['DiscoveryType'],
  properties: { DiscoveryType: { type: 'integer' }, DiscoveryData: {} },
} as const;
export type DiscoveryRequest = FromSchema<typeof discoverySchema>;
