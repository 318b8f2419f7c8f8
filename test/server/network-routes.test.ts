/**
 * Every /NetworkDriver.* route with fake drivers: a valid body reaches its
 * driver method as sent and the method's answer is the response; a body
 * its schema refuses is a 400 and reaches nothing.
 */
import t from 'tap';
import { ENDPOINT, fakeApp, NETWORK, testRoutes, type RouteCase } from './fake-app.js';

const endpoint = { NetworkID: NETWORK, EndpointID: ENDPOINT };

const ROUTES: RouteCase[] = [
  [
    'CreateNetwork',
    'createNetwork',
    { NetworkID: NETWORK, Options: { 'com.docker.network.generic': { 'ovn.gateway': 'docker' } }, IPv4Data: [{ AddressSpace: 'x', Pool: '10.0.0.0/24', Gateway: '10.0.0.1/24', AuxAddresses: null }], IPv6Data: null },
    [{}, { NetworkID: 'not/an/id' }, { NetworkID: NETWORK, IPv4Data: [{ Gateway: '10.0.0.1' }] }, { NetworkID: NETWORK, IPv4Data: [{ Pool: 'ten' }] }],
  ],
  [
    'GwAllocCheck',
    'gwAllocCheck',
    { Options: { 'com.docker.network.enable_ipv4': true, 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': {}, 'com.docker.network.internal': true } },
    [{ Options: 'internal' }, { Options: [] }, { Options: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, i])) }],
  ],
  ['DeleteNetwork', 'deleteNetwork', { NetworkID: NETWORK }, [{ NetworkID: 7 }, { NetworkID: 'x'.repeat(65) }]],
  [
    'CreateEndpoint',
    'createEndpoint',
    { ...endpoint, Interface: { Address: '10.0.0.5/24', AddressIPv6: '', MacAddress: '02:42:0a:00:00:05' }, Options: null },
    [{ NetworkID: NETWORK }, { NetworkID: NETWORK, EndpointID: 'not-hex' }, { ...endpoint, Interface: { MacAddress: '02:42' } }, { ...endpoint, Options: 'x' }],
  ],
  ['EndpointOperInfo', 'endpointOperInfo', endpoint, [{ EndpointID: ENDPOINT }]],
  ['DeleteEndpoint', 'deleteEndpoint', endpoint, [{ NetworkID: NETWORK }]],
  ['Join', 'join', { ...endpoint, SandboxKey: '/var/run/docker/netns/abc', Options: {} }, [{ ...endpoint, SandboxKey: 5 }, { ...endpoint, SandboxKey: 'x'.repeat(4097) }]],
  ['Leave', 'leave', endpoint, [{ EndpointID: ENDPOINT }]],
  ['ProgramExternalConnectivity', 'programExternalConnectivity', { ...endpoint, Options: { 'com.docker.network.portmap': [] } }, [{ NetworkID: NETWORK }]],
  ['RevokeExternalConnectivity', 'revokeExternalConnectivity', endpoint, [{ NetworkID: NETWORK }]],
  ['DiscoverNew', undefined, { DiscoveryType: 1, DiscoveryData: { Address: '10.0.0.1' } }, [{}, { DiscoveryType: 'node' }]],
  ['DiscoverDelete', undefined, { DiscoveryType: 1 }, [{ DiscoveryData: null }]],
  ['AllocateNetwork', 'allocateNetwork', { NetworkID: NETWORK, Options: { a: 'b' }, IPv4Data: [], IPv6Data: null }, [{ NetworkID: NETWORK, Options: { a: 1 } }]],
  ['FreeNetwork', undefined, { NetworkID: NETWORK }, [{}]],
];

t.test('GetCapabilities answers with any body or none', async (t) => {
  const { app, post } = fakeApp();
  t.teardown(() => app.close());
  t.same(await post('/NetworkDriver.GetCapabilities'), { status: 200, body: { Scope: 'local', ConnectivityScope: 'global', GwAllocChecker: true } });
  t.same((await post('/NetworkDriver.GetCapabilities', { anything: true })).status, 200);
});

testRoutes(t, 'NetworkDriver', ROUTES);

t.test('ids may be upper case, as swarm ids may be', async (t) => {
  const { app, post } = fakeApp();
  t.teardown(() => app.close());
  t.equal((await post('/NetworkDriver.DeleteEndpoint', { NetworkID: 'Q1w2E3r4T5y6U7i8O9p0A1s2D', EndpointID: ENDPOINT.toUpperCase() })).status, 200);
});
