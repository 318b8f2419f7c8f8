/**
 * Types derived from the protocol's JSON schemas equal the interfaces that
 * were written by hand beside each schema before (copied here as they
 * were). The checks are at compile time: `npm test` type-checks first.
 */
import t from 'tap';
import type { FromSchema } from '../../src/protocol/from-schema.js';
import type * as ipam from '../../src/protocol/ipam-driver.js';
import type * as network from '../../src/protocol/network-driver.js';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const same = <A, B>(equal: Equal<A, B>) => equal;

interface IpamData {
  AddressSpace?: string;
  Pool: string;
  Gateway?: string;
  AuxAddresses?: Record<string, string> | null;
}
type DockerOptions = Record<string, unknown> | null | undefined;
interface CreateNetworkRequest {
  NetworkID: string;
  Options?: DockerOptions;
  IPv4Data?: IpamData[] | null;
  IPv6Data?: IpamData[] | null;
}
interface NetworkRequest {
  NetworkID: string;
}
interface EndpointInterface {
  Address?: string;
  AddressIPv6?: string;
  MacAddress?: string;
}
interface CreateEndpointRequest {
  NetworkID: string;
  EndpointID: string;
  Interface?: EndpointInterface | null;
  Options?: DockerOptions;
}
interface EndpointRequest {
  NetworkID: string;
  EndpointID: string;
}
interface JoinRequest {
  NetworkID: string;
  EndpointID: string;
  SandboxKey?: string;
  Options?: DockerOptions;
}
interface AllocateNetworkRequest {
  NetworkID: string;
  Options?: Record<string, string> | null;
  IPv4Data?: IpamData[] | null;
  IPv6Data?: IpamData[] | null;
}
interface RequestPoolRequest {
  AddressSpace?: string;
  Pool?: string;
  SubPool?: string;
  Options?: Record<string, string> | null;
  V6?: boolean;
}
interface ReleasePoolRequest {
  PoolID: string;
}
interface RequestAddressRequest {
  PoolID: string;
  Address?: string;
  Options?: Record<string, string> | null;
}
interface ReleaseAddressRequest {
  PoolID: string;
  Address: string;
}

t.test('network driver requests: derived types equal the hand-written ones', async (t) => {
  t.ok(same<network.IpamData, IpamData>(true));
  t.ok(same<network.DockerOptions, DockerOptions>(true));
  t.ok(same<network.CreateNetworkRequest, CreateNetworkRequest>(true));
  t.ok(same<network.NetworkRequest, NetworkRequest>(true));
  t.ok(same<network.EndpointInterface, EndpointInterface>(true));
  t.ok(same<network.CreateEndpointRequest, CreateEndpointRequest>(true));
  t.ok(same<network.EndpointRequest, EndpointRequest>(true));
  t.ok(same<network.JoinRequest, JoinRequest>(true));
  t.ok(same<network.AllocateNetworkRequest, AllocateNetworkRequest>(true));
  t.ok(same<network.DiscoveryRequest, { DiscoveryType: number; DiscoveryData?: unknown }>(true));
});

t.test('IPAM driver requests: derived types equal the hand-written ones', async (t) => {
  t.ok(same<ipam.RequestPoolRequest, RequestPoolRequest>(true));
  t.ok(same<ipam.ReleasePoolRequest, ReleasePoolRequest>(true));
  t.ok(same<ipam.RequestAddressRequest, RequestAddressRequest>(true));
  t.ok(same<ipam.ReleaseAddressRequest, ReleaseAddressRequest>(true));
});

t.test('FromSchema keyword by keyword', async (t) => {
  t.ok(same<FromSchema<{ type: 'integer' }>, number>(true));
  t.ok(same<FromSchema<{ type: readonly ['string', 'null'] }>, string | null>(true));
  t.ok(same<FromSchema<{ type: 'array'; items: { type: 'boolean' } }>, boolean[]>(true));
  t.ok(same<FromSchema<{ type: 'array' }>, unknown[]>(true));
  t.ok(same<FromSchema<{ type: 'object' }>, Record<string, unknown>>(true));
  t.ok(same<FromSchema<{ type: 'object'; additionalProperties: { type: 'number' } }>, Record<string, number>>(true));
  t.ok(same<FromSchema<{ type: 'object'; required: readonly ['a']; properties: { a: { type: 'string' }; b: {} } }>, { a: string; b?: unknown }>(true));
  t.ok(same<FromSchema<{}>, unknown>(true), 'no type: any value');
  // A wrong expectation must fail to compile, or the checks above prove nothing.
  t.notOk(same<FromSchema<{ type: 'object'; properties: { a: { type: 'string' } } }>, { a: string }>(false), 'optional is not required');
  t.notOk(same<network.EndpointRequest, JoinRequest>(false));
});
