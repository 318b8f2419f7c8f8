/** What a driver logs (pino's JSON lines), for tests to wait on and check: from a driver process's log file, or from an in-process driver's logger. */
import { readFile } from 'node:fs/promises';
import { pino, type Logger } from 'pino';

export interface LogEntry {
  level?: number;
  msg?: string;
  err?: unknown;
  [key: string]: unknown;
}

/** The entries of a driver process's log file; other lines (Node's own reports on stderr) are skipped. */
export async function readDriverLog(file: string): Promise<LogEntry[]> {
  const entries: LogEntry[] = [];
  for (const line of (await readFile(file, 'utf8')).split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      entries.push(JSON.parse(line) as LogEntry);
    } catch {
      // a line cut short by a crash
    }
  }
  return entries;
}

/** pino's numeric levels. */
export const LEVEL = { debug: 20, info: 30, warn: 40, error: 50 } as const;

/** A logger for an in-process driver, and the entries it has logged so far. */
export function captureLog(level: 'debug' | 'info' | 'warn' = 'info'): { log: Logger; entries: LogEntry[] } {
  const entries: LogEntry[] = [];
  return { log: pino({ level }, { write: (line: string) => void entries.push(JSON.parse(line) as LogEntry) }), entries };
}
