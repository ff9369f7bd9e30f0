import { describe, expect, it } from 'vitest';
import { retrying, withDeadline } from '../../src/bus/retry.ts';
import { err } from '../../src/errors.ts';

describe('retrying', () => {
  it('tries again after transient failures, and returns the first success', async () => {
    let n = 0;
    expect(
      await retrying(
        'read',
        async () => {
          if (++n < 3) throw new Error('timeout');
          return n;
        },
        { deadlineMs: 5000 },
      ),
    ).toBe(3);
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
    await expect(
      retrying(
        'list the node registry',
        async () => {
          throw new Error('timeout');
        },
        { deadlineMs: 150 },
      ),
    ).rejects.toMatchObject({ code: 'Unavailable', message: 'cannot list the node registry: timeout' });
  });
});

describe('withDeadline', () => {
  it('passes a prompt result through', async () => {
    expect(await withDeadline(Promise.resolve(7), 1000, 'x')).toBe(7);
  });
  it('a promise that never settles becomes Unavailable, and onTimeout runs (to stop an iterator)', async () => {
    let stopped = false;
    await expect(
      withDeadline(new Promise(() => {}), 50, 'registry key listing', () => {
        stopped = true;
      }),
    ).rejects.toMatchObject({ code: 'Unavailable', message: 'registry key listing: no answer within 50 ms' });
    expect(stopped).toBe(true);
  });
});
