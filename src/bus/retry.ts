/**
 * Reads that must not fail on a failover: a server of the cluster killed, a stream or KV leader being
 * elected, a connection moving to another server. `retrying` runs `f` again with back-off (100 ms
 * doubling to 2 s) until it succeeds or the deadline passes, then throws `Unavailable` naming `what`.
 * A CorralError that is not retryable (bad input, a malformed entry) stands at once.
 */
import { CorralError, err } from '../errors.ts';

export async function retrying<T>(
  what: string,
  f: () => Promise<T>,
  opts: { deadlineMs?: number; maxDelayMs?: number } = {},
): Promise<T> {
  const until = Date.now() + (opts.deadlineMs ?? 30_000);
  for (let delay = 100; ; delay = Math.min(delay * 2, opts.maxDelayMs ?? 2000)) {
    try {
      return await f();
    } catch (e) {
      if (e instanceof CorralError && !e.retryable) throw e;
      if (Date.now() + delay > until) throw err.unavailable(`cannot ${what}: ${(e as Error).message}`, e);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/**
 * `p`, or `Unavailable` after `ms` (calling `onTimeout`, e.g. to stop an iterator): for client calls
 * that can wait forever across a failover (a KV key listing whose consumer stalls).
 */
export function withDeadline<T>(p: Promise<T>, ms: number, what: string, onTimeout?: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout?.();
      reject(err.unavailable(`${what}: no answer within ${ms} ms`));
    }, ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
