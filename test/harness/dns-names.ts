/** Where a driver puts containers' names, as e2e tests see it: recorded on ports in NB, or left to Docker's DNS. */
import { readDriverLog, type LogEntry } from './driver-log.js';
import { waitFor } from './process.js';

/** The names ports record (docker:dns-names), read with `ovn-nbctl --bare`; names hold no '='. */
export async function recordedNames(nb: { nbctl(...args: string[]): Promise<string> }): Promise<string[]> {
  const bare = await nb.nbctl('--bare', '--columns=external_ids', 'list', 'Logical_Switch_Port');
  return [...bare.matchAll(/docker:dns-names=([^=\n]*?)(?= \S+=|$)/gm)].flatMap((m) => m[1]!.split(' '));
}

/**
 * Wait until the driver logs (at debug level) that it left `container`'s
 * names to Docker's DNS, on a switch of its host alone: the moment after
 * which their absence from NB means something.
 */
export async function namesLeftToDocker(logFile: string, container: string, timeoutMs = 20_000): Promise<LogEntry> {
  const match = (entry: LogEntry) => /names left to Docker/.test(entry.msg ?? '') && JSON.stringify(entry.entries ?? []).includes(`"${container}"`);
  return waitFor(async () => (await readDriverLog(logFile)).find(match), { timeoutMs, what: `${container}'s names left to Docker by the driver` });
}
