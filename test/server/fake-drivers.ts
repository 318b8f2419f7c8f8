/**
 * The HTTP app over drivers that only record what they were called with
 * and answer what the test says, and a logger that keeps its lines.
 */
import { pino } from 'pino';
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
  const driver: NetworkDriverMethods = {
    getCapabilities: () => ({ Scope: 'local', ConnectivityScope: 'global' }),
    createNetwork: call('createNetwork'),
    deleteNetwork: call('deleteNetwork'),
    createEndpoint: call('createEndpoint'),
    endpointOperInfo: call('endpointOperInfo'),
    deleteEndpoint: call('deleteEndpoint'),
    join: call('join'),
    leave: call('leave'),
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
