/**
 * Waiting in tests: on a condition or an event, never on the clock alone. `waitFor` is the one poll
 * (a condition checked until it holds); `within` bounds a wait on an event; `deferred` is a promise
 * resolved from outside (Node 20 has no `Promise.withResolvers`).
 *
 * Each of them fails at the wait, naming what was awaited (and for `waitFor` the last value seen), so
 * a test never goes on with a condition that does not hold.
 *
 * A negative assertion ("X did not happen") is not waited for: wait for a positive signal that the
 * system has processed what could have caused X (a later message through the same subscription, a
 * reply to a later request, a pass of the loop that would do X), then assert that X did not happen.
 */
import { inspect } from 'node:util';

export interface WaitOptions {
  /** What is awaited, for the failure message ("node xb marked lost"). A function is called at the timeout. */
  what: string | (() => string);
  /** @default 5000 */
  timeoutMs?: number;
}

export interface PollOptions<T> extends WaitOptions {
  /** Pause between two checks. @default 50 */
  intervalMs?: number;
  /** When the value is the awaited one. @default the value is truthy */
  until?: (value: T) => boolean;
  /**
   * A check that throws counts as "not yet" (the error is reported if the time runs out) instead of
   * failing the wait at once: for checks that go through a server that is coming back. @default false
   */
  ignoreErrors?: boolean;
}

/** A wait that ran out of time. */
export class WaitTimeoutError extends Error {
  override name = 'WaitTimeoutError';
}

const EXPIRED = Symbol('expired');
const whatOf = (what: WaitOptions['what']) => (typeof what === 'function' ? what() : what);
const show = (v: unknown) => {
  const s = inspect(v, { depth: 4, breakLength: Infinity });
  return s.length > 800 ? `${s.slice(0, 800)}…` : s;
};

/**
 * Checks `check` until its value satisfies `until` (by default: is truthy), and resolves with that
 * value. The first check is made at once, then one every `intervalMs`; a check still running at the
 * deadline does not hold the wait up.
 *
 * @throws WaitTimeoutError after `timeoutMs`, naming `what` and the last value (or error) seen.
 * @throws whatever `check` throws, unless `ignoreErrors`.
 * @example await waitFor(() => registry.get('xb'), { until: (v) => v?.entry.state === 'lost', what: 'xb lost' });
 */
export async function waitFor<T>(check: () => T | Promise<T>, o: PollOptions<Awaited<T>>): Promise<Awaited<T>> {
  const { timeoutMs = 5000, intervalMs = 50 } = o;
  const until = o.until ?? ((v: Awaited<T>) => Boolean(v));
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<typeof EXPIRED>((r) => (timer = setTimeout(() => r(EXPIRED), timeoutMs)));
  let last: { value: unknown } | { error: unknown } | undefined;
  let checks = 0;
  try {
    for (;;) {
      checks++;
      let r: { value: Awaited<T> } | { error: unknown } | typeof EXPIRED;
      try {
        const v = await Promise.race([Promise.resolve().then(check), expired]);
        r = v === EXPIRED ? EXPIRED : { value: v };
      } catch (e) {
        if (!o.ignoreErrors) throw e;
        r = { error: e };
      }
      if (r === EXPIRED) break;
      if ('value' in r && until(r.value)) return r.value;
      last = r;
      const pause = new Promise<void>((res) => setTimeout(res, intervalMs));
      if ((await Promise.race([pause, expired])) === EXPIRED) break;
    }
  } finally {
    clearTimeout(timer);
  }
  const seen =
    last === undefined
      ? 'no check finished'
      : 'error' in last
        ? `last error: ${show(last.error)}`
        : `last value: ${show(last.value)}`;
  throw new WaitTimeoutError(
    `timed out after ${Date.now() - started} ms (${checks} checks) waiting for ${whatOf(o.what)}; ${seen}`,
  );
}

/**
 * `p`, or a WaitTimeoutError naming `what` once `timeoutMs` passed (for waits on an event: a message,
 * a process exit, a status change).
 */
export async function within<T>(p: Promise<T>, o: WaitOptions): Promise<T> {
  const { timeoutMs = 5000 } = o;
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<typeof EXPIRED>((r) => (timer = setTimeout(() => r(EXPIRED), timeoutMs)));
  try {
    const v = await Promise.race([p, expired]);
    if (v === EXPIRED) throw new WaitTimeoutError(`timed out after ${timeoutMs} ms waiting for ${whatOf(o.what)}`);
    return v;
  } finally {
    clearTimeout(timer);
  }
}

export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(reason: unknown): void;
  /** Whether resolve or reject was called. */
  readonly settled: boolean;
}

/** A promise and the functions that settle it (nats.js `deferred`, `Promise.withResolvers` of Node 22). */
export function deferred<T = void>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  let settled = false;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return {
    promise,
    resolve: (v) => {
      settled = true;
      resolve(v);
    },
    reject: (e) => {
      settled = true;
      reject(e);
    },
    get settled() {
      return settled;
    },
  };
}
