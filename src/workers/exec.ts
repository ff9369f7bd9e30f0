/**
 * Run a host command with a deadline. The one place workers fork helpers (mount, umount, useradd...).
 *
 * - No shell: `cmd` and `args` go to execve as they are.
 * - On abort or timeout the child's whole process group gets SIGKILL, and `run` waits for the child
 *   to exit before it rejects (bounded by `killGraceMs`), so that a caller that undoes the effect
 *   afterwards sees it: mount(2) is not interruptible, and a mount that completes after the caller
 *   "rolled back" would leak.
 * - Every failure is a CorralError whose message names the command and carries its stderr.
 */
import { spawn } from 'node:child_process';
import { CorralError, err } from '../errors.ts';

export interface RunOptions {
  /** Aborting kills the child. The rejection is `signal.reason` when that is a CorralError, else Cancelled. */
  signal?: AbortSignal;
  /** Kill the child after this many ms and reject with Timeout. @default no limit besides `signal` */
  timeoutMs?: number;
  /** Exit codes that resolve instead of reject; `'any'` resolves every exit, for callers that classify. @default [0] */
  okCodes?: readonly number[] | 'any';
  /** After SIGKILL, wait at most this long for the child to exit before rejecting anyway. @default 5000 */
  killGraceMs?: number;
  /** Extra environment; merged over a minimal `PATH` and `LC_ALL=C` (stable, parseable messages). */
  env?: Record<string, string>;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Output beyond this many bytes per stream is dropped (a helper that floods cannot exhaust memory). */
const MAX_OUTPUT_BYTES = 256 * 1024;
const BASE_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };

/** `mount -t tmpfs tmpfs /x` for messages. */
export const describeCommand = (cmd: string, args: readonly string[]): string => [cmd, ...args].join(' ');

function abortReason(signal: AbortSignal, what: string): CorralError {
  const r: unknown = signal.reason;
  if (r instanceof CorralError) return r;
  return err.cancelled(`${what} was cancelled`);
}

export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const what = describeCommand(cmd, args);
  const { signal, timeoutMs } = opts;
  if (signal?.aborted) return Promise.reject(abortReason(signal, what));
  const okCodes = opts.okCodes ?? [0];
  const killGraceMs = opts.killGraceMs ?? 5000;

  return new Promise<RunResult>((resolve, reject) => {
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(cmd, args, {
        stdio: ['ignore', 'pipe', 'pipe'],
        // Own process group, so that SIGKILL reaches helpers the command forks (mount.<type>, nscd...).
        detached: true,
        env: { ...BASE_ENV, ...opts.env },
      });
    } catch (e) {
      reject(err.internal(`cannot run ${what}: ${(e as Error).message}`, e));
      return;
    }

    const out: Buffer[] = [];
    const errOut: Buffer[] = [];
    let outLen = 0;
    let errLen = 0;
    child.stdout!.on('data', (d: Buffer) => {
      if (outLen < MAX_OUTPUT_BYTES) {
        out.push(d);
        outLen += d.length;
      }
    });
    child.stderr!.on('data', (d: Buffer) => {
      if (errLen < MAX_OUTPUT_BYTES) {
        errOut.push(d);
        errLen += d.length;
      }
    });

    let settled = false;
    let killedFor: CorralError | undefined;
    let timer: NodeJS.Timeout | undefined;
    let graceTimer: NodeJS.Timeout | undefined;

    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      if (graceTimer) clearTimeout(graceTimer);
      signal?.removeEventListener('abort', onAbort);
      fn();
    };

    const kill = (why: CorralError) => {
      if (killedFor || settled) return;
      killedFor = why;
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        try {
          child.kill('SIGKILL');
        } catch {
          /* already gone */
        }
      }
      // A child stuck in an uninterruptible syscall may not die at once; do not wait forever for it.
      graceTimer = setTimeout(() => finish(() => reject(why)), killGraceMs);
      graceTimer.unref();
    };

    const onAbort = () => kill(abortReason(signal!, what));
    signal?.addEventListener('abort', onAbort, { once: true });
    if (timeoutMs !== undefined) {
      timer = setTimeout(
        () => kill(err.timeout(`${what} did not finish within ${timeoutMs} ms`)),
        Math.max(0, timeoutMs),
      );
    }

    child.once('error', (e) => finish(() => reject(err.internal(`cannot run ${what}: ${e.message}`, e))));
    child.once('close', (code, sig) =>
      finish(() => {
        if (killedFor) return reject(killedFor);
        const stdout = Buffer.concat(out).toString('utf8');
        const stderr = Buffer.concat(errOut).toString('utf8');
        if (code === null) return reject(err.internal(`${what} was killed by ${sig ?? 'a signal'}: ${stderr.trim()}`));
        const result = { code, stdout, stderr };
        if (okCodes !== 'any' && !okCodes.includes(code))
          return reject(err.internal(failureMessage(what, result), result));
        resolve(result);
      }),
    );
  });
}

/** `<cmd> exited with code N: <stderr>`, the message of every failed command. */
export function failureMessage(what: string, r: RunResult): string {
  return `${what} exited with code ${r.code}: ${oneLine(r.stderr) || oneLine(r.stdout) || '(no output)'}`;
}

/** Output on one line, without mount's boilerplate hint "dmesg(1) may have more information...". */
export const oneLine = (s: string): string =>
  s
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^dmesg\(1\) may have more information/.test(l))
    .join('; ');
