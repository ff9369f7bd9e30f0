/**
 * retrying and withDeadline on fake timers: the back-off and the deadlines are checked by the clock,
 * not waited out.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { retrying, withDeadline } from '../../src/bus/retry.ts';
import { err } from '../../src/errors.ts';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('retrying', () => {
  it('tries again after transient failures (100 ms, then 200 ms later), and returns the first success', async () => {
    const at: number[] = [];
    const t0 = Date.now();
    const p = retrying(
      'read',
      async () => {
        at.push(Date.now() - t0);
        if (at.length < 3) throw new Error('timeout');
        return at.length;
      },
      { deadlineMs: 5000 },
    );
    await vi.advanceTimersByTimeAsync(300);
    expect(await p).toBe(3);
    expect(at).toEqual([0, 100, 300]);
  });
  it('a non-retryable CorralError stands at once', async () => {
    let n = 0;
    await expect(
      retrying('read', async () => {
        n++;
        throw err.invalid('bad entry');
      }),
    ).rejects.toMatchObject({ code: 'InvalidArgument' });
    expect(n).toBe(1);
  });
  it('past the deadline: Unavailable naming what and the last error', async () => {
    let n = 0;
    const p = retrying(
      'list the node registry',
      async () => {
        n++;
        throw new Error('timeout');
      },
      { deadlineMs: 150 },
    );
    const failed = expect(p).rejects.toMatchObject({
      code: 'Unavailable',
      message: 'cannot list the node registry: timeout',
    });
    // tried at 0 and 100 ms; the next try (at 300 ms) would be past the deadline: it fails then, at 100 ms
    await vi.advanceTimersByTimeAsync(100);
    await failed;
    expect(n).toBe(2);
  });
});

describe('withDeadline', () => {
  it('passes a prompt result through', async () => {
    expect(await withDeadline(Promise.resolve(7), 1000, 'x')).toBe(7);
  });
  it('a never-settling promise becomes Unavailable at the deadline; onTimeout runs (to stop an iterator)', async () => {
    let stopped = false;
    const p = withDeadline(new Promise(() => {}), 50, 'registry key listing', () => {
      stopped = true;
    });
    const failed = expect(p).rejects.toMatchObject({
      code: 'Unavailable',
      message: 'registry key listing: no answer within 50 ms',
    });
    await vi.advanceTimersByTimeAsync(49);
    expect(stopped).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await failed;
    expect(stopped).toBe(true);
  });
});
