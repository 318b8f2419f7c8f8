/**
 * One test file's driver with warm ports, in-process, over a single-chassis
 * OVN of its own, called over the plugin socket as dockerd calls it. Started
 * before the file's tests; on teardown the namespaces they made and the
 * veths of the ports they saw go, by name.
 */
import type { Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import type { DriverConfig } from '../../src/config.js';
import { hostIfName } from '../../src/host/names.js';
import { startDriver, type RunningDriver } from '../../src/service.js';
import { testDriverConfig } from './driver-config.js';
import { createNetns, deleteNetns } from './netns.js';
import { startOvnStack, type OvnStack } from './ovn-stack.js';
import { callPlugin } from './plugin-client.js';
import { run } from './process.js';

export const hex = (n: number): string => randomBytes(n).toString('hex');

export class WarmDriverFixture {
  stack!: OvnStack;
  dir!: string;
  driver!: RunningDriver;
  /** Namespaces the tests made. */
  readonly namespaces: string[] = [];
  /** Port names whose veths the tests may have left in the host namespace. */
  readonly portsSeen = new Set<string>();
  /** Where engineTakes() puts container ends: one namespace for the file's containers that need no traffic. */
  private containers: Promise<string> | undefined;

  constructor(t: Test, tmpPrefix: string) {
    t.before(async () => {
      this.stack = await startOvnStack();
      this.dir = await mkdtemp(path.join(os.tmpdir(), tmpPrefix));
      this.driver = await this.start();
    });
    t.teardown(async () => {
      for (const ns of this.namespaces) await deleteNetns(ns);
      await this.driver?.close();
      for (const name of this.portsSeen) await run('ip', ['link', 'del', hostIfName(name)]).catch(() => undefined);
      await this.stack?.stop();
      if (this.dir) await rm(this.dir, { recursive: true, force: true });
    });
  }

  /** Another driver on the same OVN and plugin directory (2 warm ports unless overridden). */
  start(overrides: Partial<DriverConfig> = {}, log: Logger | 'warn' | 'silent' = 'warn'): Promise<RunningDriver> {
    return startDriver(testDriverConfig(this.stack, this.dir, { warmPorts: 2, ...overrides }), typeof log === 'string' ? pino({ level: log }) : log);
  }

  /** The file's driver stops, as at a host restart, and starts again (with other settings or logger, if given). */
  async restart(overrides: Partial<DriverConfig> = {}, log?: Logger): Promise<void> {
    await this.driver.close();
    this.driver = await this.start(overrides, log);
  }

  /**
   * After Join, the engine moves the container end out of the host's
   * namespace: here into a namespace shared by the file's containers, under
   * its own name. Until then the driver counts the start as in flight, and
   * refills wait for it (src/warm/starts-in-flight.ts).
   */
  async engineTakes(containerEnd: string): Promise<void> {
    this.containers ??= createNetns().then((ns) => (this.namespaces.push(ns), ns));
    await run('ip', ['link', 'set', containerEnd, 'netns', await this.containers]);
  }

  call(method: string, body?: unknown): ReturnType<typeof callPlugin> {
    return callPlugin(this.driver.address, method, body);
  }

  /** Whether ovn-controller reports the port's flows installed on its OVS interface. */
  async installed(portName: string): Promise<boolean> {
    const out = await this.stack.vsctl('--if-exists', 'get', 'Interface', hostIfName(portName), 'external_ids:ovn-installed');
    return out.trim().replace(/"/g, '') === 'true';
  }

  async createEndpoint(networkId: string, address: string, mac = '', id = hex(32)) {
    const reply = await this.call('NetworkDriver.CreateEndpoint', {
      NetworkID: networkId,
      EndpointID: id,
      Interface: { Address: address, AddressIPv6: '', MacAddress: mac },
      Options: {},
    });
    return { id, status: reply.status, body: reply.body };
  }
}
