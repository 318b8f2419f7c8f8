/**
 * The HTTP app over drivers that only record what they were called with
 * and answer what the test says, with a logger that keeps its lines; and
 * the checks every body-taking route goes through.
 */
import { pino } from 'pino';
import type { Test } from 'tap';
import { buildApp } from '../../src/server/app.js';
import type { IpamDriverMethods } from '../../src/server/ipam-routes.js';
import type { NetworkDriverMethods } from '../../src/server/network-routes.js';

export interface Call {
  method: string;
  body: unknown;
}

/** What a fake method does: return an answer, or throw. */
export type Answer = (method: string, body: unknown) => unknown;

export function fakeApp(answer: Answer = () => ({}), options: { bodyLimit?: number } = {}) {
  const calls: Call[] = [];
  const logs: { level: number; msg: string; [key: string]: unknown }[] = [];
  // Promise<never> fits every method's declared answer: the test decides what comes back.
  const call = (method: string) => async (body: unknown): Promise<never> => {
    calls.push({ method, body });
    return answer(method, body) as never;
  };
  // The same, for the methods that answer without waiting.
  const callSync = (method: string) => (body: unknown): never => {
    calls.push({ method, body });
    return answer(method, body) as never;
  };
  const driver: NetworkDriverMethods = {
    getCapabilities: () => ({ Scope: 'local', ConnectivityScope: 'global', GwAllocChecker: true }),
    gwAllocCheck: callSync('gwAllocCheck'),
    createNetwork: call('createNetwork'),
    deleteNetwork: call('deleteNetwork'),
    createEndpoint: call('createEndpoint'),
    endpointOperInfo: call('endpointOperInfo'),
    deleteEndpoint: call('deleteEndpoint'),
    join: call('join'),
    leave: call('leave'),
    programExternalConnectivity: call('programExternalConnectivity'),
    revokeExternalConnectivity: call('revokeExternalConnectivity'),
    allocateNetwork: call('allocateNetwork'),
  };
  const ipam: IpamDriverMethods = {
    getCapabilities: () => ({ RequiresMACAddress: false, RequiresRequestReplay: false }),
    getDefaultAddressSpaces: () => ({ LocalDefaultAddressSpace: 'ovn', GlobalDefaultAddressSpace: 'ovn' }),
    requestPool: call('requestPool'),
    releasePool: call('releasePool'),
    requestAddress: call('requestAddress'),
    releaseAddress: call('releaseAddress'),
  };
  const logger = pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line) as (typeof logs)[number]) });
  const app = buildApp(driver, ipam, { logger, ...options });
  /** POST as the engine does: a JSON text without a Content-Type. */
  const post = async (url: string, body?: unknown) => {
    const res = await app.inject({ method: 'POST', url, ...(body === undefined ? {} : { payload: typeof body === 'string' ? body : JSON.stringify(body) }) });
    return { status: res.statusCode, body: res.json() as Record<string, unknown> };
  };
  return { app, calls, logs, post };
}

export const NETWORK = 'a'.repeat(64);
export const ENDPOINT = 'b'.repeat(64);

/** A route, the driver method it calls (none: it answers {} itself), a body it takes, bodies its schema refuses. */
export type RouteCase = [name: string, method: string | undefined, body: object, refused: object[]];

/** A valid body reaches its method as sent and gets the method's answer; refused ones are 400s that reach nothing. */
export function testRoutes(t: Test, api: 'NetworkDriver' | 'IpamDriver', routes: RouteCase[]): void {
  for (const [name, method, body, refused] of routes) {
    t.test(`/${api}.${name}`, async (t) => {
      const { app, post, calls } = fakeApp((m) => ({ answeredBy: m }));
      t.teardown(() => app.close());
      t.same(await post(`/${api}.${name}`, body), { status: 200, body: method ? { answeredBy: method } : {} }, 'a valid body is answered');
      t.same(calls, method ? [{ method, body }] : [], method ? `${method} gets the body as sent` : 'no driver method is called');

      calls.length = 0;
      for (const bad of refused) {
        const res = await post(`/${api}.${name}`, bad);
        t.equal(res.status, 400, JSON.stringify(bad));
        t.match(res.body, { Err: new RegExp(`^invalid ${api}\\.${name} request: body`) });
      }
      t.same(calls, [], 'no refused body reaches the driver');
    });
  }
}
