/**
 * The test helpers' waits (test/helpers/wait.ts), on fake timers: they end when the condition holds,
 * and fail at the wait.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { deferred, waitFor, WaitTimeoutError, within } from '../helpers/wait.ts';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('waitFor', () => {
  it('resolves with the first value that holds, checking once at once and then every intervalMs', async () => {
    let n = 0;
    const p = waitFor(() => ++n, { until: (v) => v >= 3, intervalMs: 100, what: 'n to reach 3' });
    await vi.advanceTimersByTimeAsync(0);
    expect(n).toBe(1);
    await vi.advanceTimersByTimeAsync(200);
    expect(await p).toBe(3);
    await vi.advanceTimersByTimeAsync(1000);
    expect(n).toBe(3); // no check after it held
  });

  it('by default waits for a truthy value (async checks too)', async () => {
    let ready: string | undefined = undefined;
    const p = waitFor(async () => ready, { what: 'ready' });
    await vi.advanceTimersByTimeAsync(120);
    ready = 'yes';
    await vi.advanceTimersByTimeAsync(50);
    expect(await p).toBe('yes');
  });

  it('rejects at the timeout naming what it waited for and the last value', async () => {
    const p = waitFor(() => ({ state: 'ready' }), {
      until: (v) => v.state === 'lost',
      timeoutMs: 1000,
      what: 'node xb lost',
    });
    const failed = expect(p).rejects.toThrow(
      /^timed out after 1000 ms \(\d+ checks\) waiting for node xb lost; last value: \{ state: 'ready' \}$/,
    );
    await vi.advanceTimersByTimeAsync(1000);
    await failed;
    await expect(p).rejects.toBeInstanceOf(WaitTimeoutError);
  });

  it('a check that never settles does not hold the wait past its deadline', async () => {
    const p = waitFor(() => new Promise<boolean>(() => {}), { timeoutMs: 500, what: 'an answer' });
    const failed = expect(p).rejects.toThrow(/waiting for an answer; no check finished/);
    await vi.advanceTimersByTimeAsync(500);
    await failed;
  });

  it('a check that throws fails the wait at once, unless ignoreErrors (then the last error is reported)', async () => {
    await expect(
      waitFor(
        () => {
          throw new Error('boom');
        },
        { what: 'x' },
      ),
    ).rejects.toThrow('boom');

    let n = 0;
    const ok = waitFor(
      () => {
        if (++n < 3) throw new Error('not yet');
        return n;
      },
      { ignoreErrors: true, what: 'x' },
    );
    await vi.advanceTimersByTimeAsync(100);
    expect(await ok).toBe(3);

    const never = waitFor(
      () => {
        throw new Error('server gone');
      },
      { ignoreErrors: true, timeoutMs: 300, what: 'the server' },
    );
    const failed = expect(never).rejects.toThrow(/waiting for the server; last error: Error: server gone/);
    await vi.advanceTimersByTimeAsync(300);
    await failed;
  });

  it('`what` may be a function, called at the timeout', async () => {
    let state = 'booting';
    const p = waitFor(() => false, { timeoutMs: 100, what: () => `the VM (it is ${state})` });
    const failed = expect(p).rejects.toThrow(/waiting for the VM \(it is stopped\)/);
    state = 'stopped';
    await vi.advanceTimersByTimeAsync(100);
    await failed;
  });
});

describe('within', () => {
  it('passes the value through, or rejects naming what after timeoutMs', async () => {
    expect(await within(Promise.resolve(7), { what: 'seven' })).toBe(7);
    const p = within(new Promise(() => {}), { timeoutMs: 250, what: 'an exit' });
    const failed = expect(p).rejects.toThrow('timed out after 250 ms waiting for an exit');
    await vi.advanceTimersByTimeAsync(250);
    await failed;
    await expect(within(Promise.reject(new Error('first')), { what: 'x' })).rejects.toThrow('first');
  });
});

describe('deferred', () => {
  it('is settled from outside, once', async () => {
    const d = deferred<number>();
    expect(d.settled).toBe(false);
    d.resolve(1);
    d.resolve(2);
    expect(d.settled).toBe(true);
    expect(await d.promise).toBe(1);
    const e = deferred();
    e.reject(new Error('no'));
    await expect(e.promise).rejects.toThrow('no');
  });
});
