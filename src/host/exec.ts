/**
 * The one place in the driver that starts child processes. Everything else
 * (ovs-vsctl, ip, ethtool) goes through a Runner, so tests and callers get one
 * error type, one timeout policy and never a shell.
 */
import { execFile, type ExecFileException } from 'node:child_process';

export interface CommandResult {
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  timeoutMs?: number;
  /** Written to the command's standard input (iptables-restore); otherwise stdin is closed. */
  input?: string;
}

export interface Runner {
  run(command: string, args: readonly string[], options?: RunOptions): Promise<CommandResult>;
}

export interface RunnerOptions {
  env?: NodeJS.ProcessEnv;
  defaultTimeoutMs?: number;
}

export class CommandError extends Error {
  readonly command: string;
  readonly args: readonly string[];
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly stderr: string;
  readonly stdout: string;
  readonly timedOut: boolean;

  constructor(init: {
    command: string;
    args: readonly string[];
    exitCode: number | null;
    signal: string | null;
    stdout: string;
    stderr: string;
    timedOut: boolean;
    timeoutMs?: number;
    cause?: unknown;
  }) {
    const status = init.timedOut
      ? `timed out after ${init.timeoutMs ?? '?'} ms`
      : init.exitCode !== null
        ? `exit ${init.exitCode}`
        : errorCode(init.cause) ?? (init.signal !== null ? `signal ${init.signal}` : 'unknown failure');
    const detail = firstLine(init.stderr);
    super(`${[init.command, ...init.args].join(' ')} failed (${status})${detail ? `: ${detail}` : ''}`, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'CommandError';
    this.command = init.command;
    this.args = [...init.args];
    this.exitCode = init.exitCode;
    this.signal = init.signal;
    this.stdout = init.stdout;
    this.stderr = init.stderr;
    this.timedOut = init.timedOut;
  }
}

function firstLine(text: string): string {
  return text.split('\n').find((line) => line.trim() !== '')?.trim() ?? '';
}

/** Node's own reason, when the program never ran (spawn ENOENT) or was cut off (maxBuffer). */
function errorCode(cause: unknown): string | undefined {
  const code = (cause as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code !== 'string') return undefined;
  return code.startsWith('ERR_') ? code : `spawn ${code}`;
}

const DEFAULT_TIMEOUT_MS = 10_000;
// ovs-vsctl list output grows with the number of ports; a truncated JSON
// document is worse than a large one.
const MAX_BUFFER = 64 * 1024 * 1024;

export function createRunner(options: RunnerOptions = {}): Runner {
  // The callers parse tool output (ip's and ethtool's messages), so the
  // wording must not depend on the operator's locale.
  const env: NodeJS.ProcessEnv = { ...(options.env ?? process.env), LC_ALL: 'C' };
  const defaultTimeoutMs = options.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS;

  return {
    run(command, args, runOptions = {}) {
      const timeoutMs = runOptions.timeoutMs ?? defaultTimeoutMs;
      return new Promise((resolve, reject) => {
        let timedOut = false;
        // Our own timer instead of execFile's `timeout`: execFile reports its
        // own kill and a maxBuffer overflow the same way (killed=true), and a
        // caller deciding whether to retry needs to tell them apart.
        const child = execFile(
          command,
          [...args],
          { env, maxBuffer: MAX_BUFFER, killSignal: 'SIGKILL', encoding: 'utf8', windowsHide: true },
          (err: ExecFileException | null, stdout: string, stderr: string) => {
            clearTimeout(timer);
            if (!err) {
              resolve({ stdout, stderr });
              return;
            }
            // A numeric code is an exit status; a string one (ENOENT, EACCES,
            // ERR_CHILD_PROCESS_STDIO_MAXBUFFER) means it never ran or was cut off.
            const exitCode = typeof err.code === 'number' ? err.code : null;
            reject(
              new CommandError({
                command,
                args,
                exitCode: timedOut ? null : exitCode,
                signal: err.signal ?? null,
                stdout,
                stderr,
                timedOut,
                timeoutMs,
                cause: typeof err.code === 'string' ? err : undefined,
              }),
            );
          },
        );
        const timer = setTimeout(() => {
          timedOut = true;
          // SIGKILL: the timeout is the caller's deadline (a Docker API call is
          // waiting), and a tool that handles SIGTERM must not outlive it.
          child.kill('SIGKILL');
          // execFile reports only once the pipes close, and a grandchild that
          // inherited them (a shell's `sleep`) may hold them open for long after.
          child.stdout?.destroy();
          child.stderr?.destroy();
        }, timeoutMs);
        // A tool that exits before reading all its input (iptables-restore on a bad line) closes the pipe: the
        // write then fails with EPIPE, which unhandled would end the driver; its exit status reports the failure.
        child.stdin?.on('error', () => undefined);
        // Without input, an open pipe would only let a tool that reads stdin hang.
        child.stdin?.end(runOptions.input);
      });
    },
  };
}
