/**
 * The HTTP layer alone (no OVN, no root): fastify.inject against fake
 * drivers. How every request is parsed, and how every failure becomes a
 * status and {"Err": ...}, the same in both route plugins.
 */
import t from 'tap';
import { DriverError } from '../../src/driver/errors.js';
import { ENDPOINT, fakeApp, NETWORK } from './fake-app.js';

const WARN = 40;
const ERROR = 50;

t.test('/Plugin.Activate names both APIs, with or without a body', async (t) => {
  const { app, post } = fakeApp();
  t.teardown(() => app.close());
  t.same(await post('/Plugin.Activate'), { status: 200, body: { Implements: ['NetworkDriver', 'IpamDriver'] } });
  t.same((await post('/Plugin.Activate', {})).body, { Implements: ['NetworkDriver', 'IpamDriver'] });
});

t.test('an unknown method is a 404 naming it', async (t) => {
  const { app, post, calls } = fakeApp();
  t.teardown(() => app.close());
  t.same(await post('/NetworkDriver.Teleport', {}), { status: 404, body: { Err: 'POST /NetworkDriver.Teleport is not a method of this plugin' } });
  const res = await app.inject({ method: 'GET', url: '/Plugin.Activate' });
  t.equal(res.statusCode, 404);
  t.same(res.json(), { Err: 'GET /Plugin.Activate is not a method of this plugin' });
  t.same(calls, []);
});

t.test('a body that is not JSON, or missing, is a 400', async (t) => {
  const { app, post, calls } = fakeApp();
  t.teardown(() => app.close());
  t.same(await post('/NetworkDriver.CreateNetwork', '{"NetworkID":'), { status: 400, body: { Err: 'request body is not valid JSON' } });
  t.same(await post('/IpamDriver.RequestPool', 'not json'), { status: 400, body: { Err: 'request body is not valid JSON' } });
  t.same(await post('/NetworkDriver.CreateNetwork'), { status: 400, body: { Err: 'invalid NetworkDriver.CreateNetwork request: body must be object' } });
  t.same(await post('/IpamDriver.ReleasePool', '  \n'), { status: 400, body: { Err: 'invalid IpamDriver.ReleasePool request: body must be object' } });
  t.same(await post('/IpamDriver.ReleasePool', 'null'), { status: 400, body: { Err: 'invalid IpamDriver.ReleasePool request: body must be object' } });
  t.same(calls, []);
});

t.test('a body with a Content-Type is read the same', async (t) => {
  const { app, calls } = fakeApp();
  t.teardown(() => app.close());
  for (const contentType of ['application/json', 'text/plain']) {
    const res = await app.inject({ method: 'POST', url: '/NetworkDriver.DeleteNetwork', headers: { 'content-type': contentType }, payload: JSON.stringify({ NetworkID: NETWORK }) });
    t.equal(res.statusCode, 200, contentType);
  }
  t.equal(calls.length, 2);
});

t.test('a body over the limit is refused before any handler', async (t) => {
  const { app, post, calls } = fakeApp(undefined, { bodyLimit: 100 });
  t.teardown(() => app.close());
  const res = await post('/NetworkDriver.CreateNetwork', { NetworkID: NETWORK, Options: { x: 'y'.repeat(100) } });
  t.equal(res.status, 413);
  t.type(res.body.Err, 'string');
  t.same(calls, []);
});

t.test('a body failing the schema is a 400 naming the method, and is logged as a warning', async (t) => {
  const { app, post, calls, logs } = fakeApp();
  t.teardown(() => app.close());
  const res = await post('/NetworkDriver.CreateNetwork', { Options: null });
  t.same(res, { status: 400, body: { Err: "invalid NetworkDriver.CreateNetwork request: body must have required property 'NetworkID'" } });
  t.same(calls, []);
  t.match(logs.find((l) => l.level === WARN), { url: '/NetworkDriver.CreateNetwork', status: 400, msg: res.body.Err });
});

t.test('a DriverError answers its status and message, in both APIs', async (t) => {
  for (const status of [400, 404, 409, 500, 503] as const) {
    const { app, post, logs } = fakeApp(() => {
      throw new DriverError(`failed with ${status}`, status);
    });
    t.same(await post('/NetworkDriver.Join', { NetworkID: NETWORK, EndpointID: ENDPOINT }), { status, body: { Err: `failed with ${status}` } });
    t.same(await post('/IpamDriver.ReleaseAddress', { PoolID: 'p', Address: '10.0.0.2' }), { status, body: { Err: `failed with ${status}` } });
    // A refused request is the caller's doing (warn); a failure of OVN or the host is ours (error, with the stack).
    const failures = logs.filter((l) => l.level >= WARN);
    t.equal(failures.length, 2);
    for (const line of failures) {
      t.equal(line.level, status >= 500 ? ERROR : WARN, `logged at ${status >= 500 ? 'error' : 'warn'} for ${status}`);
      t.equal(line.msg, `failed with ${status}`);
      if (status >= 500) t.match(line, { err: { type: 'DriverError' } });
    }
    await app.close();
  }
});

t.test('an unexpected error is a 500 with its message, logged as an error', async (t) => {
  const { app, post, logs } = fakeApp(() => {
    throw new TypeError('cannot read properties of undefined');
  });
  t.teardown(() => app.close());
  t.same(await post('/NetworkDriver.CreateEndpoint', { NetworkID: NETWORK, EndpointID: ENDPOINT }), { status: 500, body: { Err: 'cannot read properties of undefined' } });
  t.same(await post('/IpamDriver.RequestPool', {}), { status: 500, body: { Err: 'cannot read properties of undefined' } });
  const errors = logs.filter((l) => l.level === ERROR);
  t.equal(errors.length, 2);
  t.match(errors[0], { url: '/NetworkDriver.CreateEndpoint', err: { type: 'TypeError' } });
});

t.test('an error carrying a status outside 4xx and 5xx is a 500', async (t) => {
  const { app, post } = fakeApp(() => {
    throw Object.assign(new Error('redirected'), { statusCode: 302 });
  });
  t.teardown(() => app.close());
  t.same(await post('/NetworkDriver.DeleteNetwork', { NetworkID: NETWORK }), { status: 500, body: { Err: 'redirected' } });
});

t.test('every answered request is logged once at debug, with its status', async (t) => {
  const { app, post, logs } = fakeApp();
  t.teardown(() => app.close());
  await post('/NetworkDriver.GetCapabilities');
  await post('/NetworkDriver.Nothing');
  const handled = logs.filter((l) => l.msg === 'handled');
  t.match(handled, [
    { level: 20, url: '/NetworkDriver.GetCapabilities', status: 200 },
    { level: 20, url: '/NetworkDriver.Nothing', status: 404 },
  ]);
  t.equal(handled.length, 2);
  t.notOk(logs.some((l) => l.msg === 'incoming request' || l.msg === 'request completed'), 'no access lines');
});
