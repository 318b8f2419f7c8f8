/**
 * The driver as its own process survives a promise rejection nobody
 * handled: it logs it at error level and keeps serving. The rejection is
 * injected by a module preloaded into the driver's node (NODE_OPTIONS
 * --import), on a signal the test sends once the driver serves; bare
 * ovsdb-servers stand in for OVS and NB, and the driver runs in a network
 * namespace of its own, so its start-up sweep sees no one else's links.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { startDriverProcess, type DriverProcess } from '../harness/driver-process.js';
import { LEVEL, readDriverLog } from '../harness/driver-log.js';
import { createNetns, deleteNetns } from '../harness/netns.js';
import { startOvsdbServer, type OvsdbServer } from '../harness/ovsdb-server.js';
import { callPlugin } from '../harness/plugin-client.js';
import { isAlive, makeTempDir, removeDir, run, waitFor } from '../harness/process.js';

const INJECTED = `injected by the test ${randomBytes(4).toString('hex')}`;

t.test('an unhandled rejection is logged at error level and the driver keeps serving', async (t) => {
  let nb: OvsdbServer | undefined;
  let ovs: OvsdbServer | undefined;
  let netns: string | undefined;
  let driver: DriverProcess | undefined;
  const dir = await makeTempDir('unhandled');
  t.teardown(async () => {
    await driver?.stop();
    if (netns) await deleteNetns(netns);
    await ovs?.stop();
    await nb?.stop();
    await removeDir(dir);
  });

  nb = await startOvsdbServer({ schema: 'nb' });
  ovs = await startOvsdbServer({ schema: 'vswitch' });
  const vsctl = (...args: string[]) => run('ovs-vsctl', [`--db=${ovs!.unixRemote}`, '--no-wait', ...args]);
  await vsctl('init');
  await vsctl('set', 'Open_vSwitch', '.', `external_ids:system-id=unhandled-${randomBytes(3).toString('hex')}`);
  await vsctl('add-br', 'br-int', '--', 'set', 'Bridge', 'br-int', 'datapath_type=netdev');
  netns = await createNetns('ovnur');

  const inject = path.join(dir, 'inject.mjs');
  await writeFile(inject, `process.on('SIGUSR2', () => { Promise.reject(new Error(${JSON.stringify(INJECTED)})); });\n`);
  const logFile = path.join(dir, 'driver.log');
  const nodeOptions = process.env.NODE_OPTIONS;
  process.env.NODE_OPTIONS = `${nodeOptions ?? ''} --import ${pathToFileURL(inject).href}`.trim();
  try {
    driver = await startDriverProcess({
      name: `ovnur${randomBytes(3).toString('hex')}`,
      pluginDir: dir,
      nbRemote: nb.unixRemote,
      ovsDb: ovs.unixRemote,
      logFile,
      netns,
      extraArgs: ['--docker-host', 'none', '--masquerade', 'false', '--warm-ports', '0'],
    });
  } finally {
    if (nodeOptions === undefined) delete process.env.NODE_OPTIONS;
    else process.env.NODE_OPTIONS = nodeOptions;
  }

  process.kill(driver.pid, 'SIGUSR2');
  // Whichever comes first: the driver's log entry of the rejection, or its exit (Node's own report goes to stderr, not JSON).
  const outcome = await waitFor(
    async () => {
      const entry = (await readDriverLog(logFile)).find((e) => (e.err as { message?: string } | undefined)?.message === INJECTED);
      if (entry) return { entry };
      return isAlive(driver!.pid) ? undefined : { exited: true };
    },
    { timeoutMs: 15_000, what: 'the injected rejection to be logged, or the driver to exit' },
  );
  if ('exited' in outcome) {
    t.fail(`the driver exited; the end of its output: ${(await readFile(logFile, 'utf8')).slice(-1500)}`);
    return;
  }
  t.equal(outcome.entry.level, LEVEL.error, 'logged at error level');
  t.match(outcome.entry.msg, /unhandled promise rejection.*keeps running/, 'saying so');
  t.ok(isAlive(driver.pid), 'still running');
  t.equal((await callPlugin(driver.socket, 'Plugin.Activate')).status, 200, 'and serving');
});
