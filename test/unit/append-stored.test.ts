/**
 * append-stored.ts: an input reaches its machine only once stored, and once stored it does. Found by
 * the simulator (seeds 36, 299, 1649): an effect's outcome whose append failed through a failover was
 * still handed to the machine, so the log replayed to another state than the one recorded.
 */
import { describe, expect, it, vi } from 'vitest';
import { appendStored } from '../../src/agent/append-stored.ts';
import { err } from '../../src/errors.ts';
import type { EventAppender } from '../../src/bus/eventlog.ts';

/** An appender that fails `fails` times with `e`, then stores; it records each attempt's msgId. */
function flaky(fails: number, e = err.unavailable('no JetStream leader')) {
  const ids: (string | undefined)[] = [];
  const events: EventAppender = {
    append: (_sandbox, _kind, _data, msgId) => {
      ids.push(msgId);
      return ids.length <= fails ? Promise.reject(e) : Promise.resolve(41 + ids.length);
    },
  };
  return { events, ids };
}

describe('appendStored', () => {
  it('tries a failed append again under the same Nats-Msg-Id until it is stored', async () => {
    vi.useFakeTimers();
    try {
      const { events, ids } = flaky(3);
      const retries: string[] = [];
      const p = appendStored(events, 's', 'input', { x: 1 }, { msgId: 'm-1', onRetry: (e) => retries.push(e.code) });
      await vi.advanceTimersByTimeAsync(250 + 500 + 1000);
      expect(await p).toBe(45);
      expect(ids).toEqual(['m-1', 'm-1', 'm-1', 'm-1']);
      expect(retries).toEqual(['Unavailable', 'Unavailable', 'Unavailable']);
    } finally {
      vi.useRealTimers();
    }
  });

  it('keeps one generated id across its attempts when the caller gives none', async () => {
    const { events, ids } = flaky(1);
    await appendStored(events, 's', 'input', {});
    expect(ids).toHaveLength(2);
    expect(ids[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(ids[1]).toBe(ids[0]);
  });

  it('a refusal that is not retryable stands at once', async () => {
    const { events, ids } = flaky(5, err.invalid('record too large'));
    await expect(appendStored(events, 's', 'input', {})).rejects.toMatchObject({ code: 'InvalidArgument' });
    expect(ids).toHaveLength(1);
  });

  it('gives up when its actor stops (abort) or when stop() says so, with the last error', async () => {
    const a = flaky(Infinity);
    const ac = new AbortController();
    const p = appendStored(a.events, 's', 'input', {}, { signal: ac.signal });
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: 'Unavailable' });
    const b = flaky(Infinity);
    let live = true;
    const q = appendStored(b.events, 's', 'input', {}, { stop: () => !live, onRetry: () => (live = false) });
    await expect(q).rejects.toMatchObject({ code: 'Unavailable' });
    expect(b.ids).toHaveLength(2);
  });
});
