/**
 * Every /IpamDriver.* route with fake drivers: a valid body reaches its
 * driver method as sent and the method's answer is the response; a body
 * its schema refuses is a 400 and reaches nothing.
 */
import t from 'tap';
import { fakeApp, testRoutes, type RouteCase } from './fake-app.js';

const ROUTES: RouteCase[] = [
  [
    'RequestPool',
    'requestPool',
    { AddressSpace: 'ovn', Pool: '10.1.0.0/24', SubPool: '', Options: { 'com.docker.network.ipam.serial': 'true' }, V6: false },
    [{ V6: 'no' }, { Pool: '10.1.0.0/24; rm -rf /' }, { Options: { a: {} } }, { AddressSpace: 'x'.repeat(257) }],
  ],
  ['ReleasePool', 'releasePool', { PoolID: 'ovn/10.1.0.0/24' }, [{}, { PoolID: 'p'.repeat(129) }]],
  ['RequestAddress', 'requestAddress', { PoolID: 'p', Address: '', Options: { 'com.docker.network.gateway': 'true' } }, [{ Address: '10.1.0.2' }, { PoolID: 'p', Options: [] }]],
  ['ReleaseAddress', 'releaseAddress', { PoolID: 'p', Address: '10.1.0.2' }, [{ PoolID: 'p' }, { PoolID: 'p', Address: null }]],
];

t.test('GetCapabilities and GetDefaultAddressSpaces answer with no body', async (t) => {
  const { app, post } = fakeApp();
  t.teardown(() => app.close());
  t.same(await post('/IpamDriver.GetCapabilities'), { status: 200, body: { RequiresMACAddress: false, RequiresRequestReplay: false } });
  t.same(await post('/IpamDriver.GetDefaultAddressSpaces'), { status: 200, body: { LocalDefaultAddressSpace: 'ovn', GlobalDefaultAddressSpace: 'ovn' } });
});

testRoutes(t, 'IpamDriver', ROUTES);

t.test('RequestPool takes an empty body: every field is optional', async (t) => {
  const { app, post, calls } = fakeApp();
  t.teardown(() => app.close());
  t.equal((await post('/IpamDriver.RequestPool', {})).status, 200);
  t.same(calls, [{ method: 'requestPool', body: {} }]);
});
