#!/usr/bin/env node
/**
 * ovn-docker-driver: entry point. Parses options, starts the driver, and
 * shuts it down cleanly on SIGTERM/SIGINT (systemd, docker stop, Ctrl-C).
 */
import { readFileSync } from 'node:fs';
import { pino } from 'pino';
import { configWarnings, helpText, parseCommandLine, UsageError } from './options.js';
import { startDriver, StartupError } from '../service.js';
import { cleanupHost } from '../cleanup.js';
import { publishedPorts } from '../ports.js';

async function main(): Promise<number> {
  let command;
  try {
    command = parseCommandLine(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`ovn-docker-driver: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (command.kind === 'help') {
    process.stdout.write(`${helpText()}\n`);
    return 0;
  }
  if (command.kind === 'version') {
    process.stdout.write(`${packageVersion()}\n`);
    return 0;
  }
  const log = pino({ level: command.config.logLevel });
  // Node ends the process on a rejection nobody handled; every container start on this host would then fail
  // until a restart, for one background task's error. Such an error is a bug to report, not a reason to stop.
  process.on('unhandledRejection', (reason: unknown) => {
    log.error({ err: reason }, 'unhandled promise rejection (a bug in the driver: please report it); the driver keeps running');
  });
  if (command.kind === 'ports') {
    try {
      process.stdout.write(`${await publishedPorts(command.config)}\n`);
      return 0;
    } catch (err) {
      process.stderr.write(`ovn-docker-driver ports: ${(err as Error).message}\n`);
      return 1;
    }
  }
  if (command.kind === 'cleanup') {
    try {
      await cleanupHost(command.config, { nb: command.nb }, log);
      return 0;
    } catch (err) {
      log.error({ err }, err instanceof StartupError ? err.message : 'cleanup failed; run it again once the cause is fixed');
      return 1;
    }
  }
  for (const warning of configWarnings(command.config)) log.warn(warning);
  let running;
  try {
    running = await startDriver(command.config, log);
  } catch (err) {
    log.error({ err }, err instanceof StartupError ? err.message : 'driver failed to start');
    return 1;
  }
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'shutting down');
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  await running.close();
  return 0;
}

/** The version in our package.json, found by walking up from this file (works from src/ and from dist/). */
function packageVersion(): string {
  for (let dir = new URL('.', import.meta.url); dir.pathname !== '/'; dir = new URL('..', dir)) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('package.json', dir), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'ovn-docker-driver' && pkg.version) return pkg.version;
    } catch {
      // not here; look one level up
    }
  }
  return 'unknown';
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`ovn-docker-driver: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
