import { describe, expect, it } from 'vitest';
import type { Msg } from '@nats-io/transport-node';
import { RequestLedger, requestKey } from '../../src/agent/idempotency.ts';
import type { Envelope } from '../../src/bus/rpc.ts';

const msg = (name: string) => ({ name }) as unknown as Msg;
const setup = (ttlMs?: number, max?: number) => {
  const answered: [string, Envelope<unknown>][] = [];
  const l = new RequestLedger((m, env) => answered.push([(m as unknown as { name: string }).name, env]), ttlMs, max);
  return { l, answered };
};
const OK = { ok: true as const, result: { pid: 7 } };

describe('requestKey', () => {
  it('is <id>/<requestId>, absent without a requestId, InvalidArgument when malformed', () => {
    expect(requestKey({ id: 'a', requestId: 'r' })).toBe('a/r');
    expect(requestKey({ id: 'a' })).toBeUndefined();
    expect(requestKey(undefined)).toBeUndefined();
    for (const bad of [1, '', 'x'.repeat(129), {}])
      expect(() => requestKey({ id: 'a', requestId: bad })).toThrow(/requestId/);
  });
});

describe('RequestLedger', () => {
  it('a new key is admitted once; repeats join it and all get the one answer', () => {
    const { l, answered } = setup();
    expect(l.admit('k', msg('first'))).toBe(false);
    expect(l.admit('k', msg('second'))).toBe(true);
    expect(answered).toEqual([]);
    l.settle('k', OK);
    expect(answered).toEqual([
      ['first', OK],
      ['second', OK],
    ]);
    expect(l.admit('k', msg('later'))).toBe(true);
    expect(answered.at(-1)).toEqual(['later', OK]);
  });

  it('no key: always new', () => {
    const { l } = setup();
    expect(l.admit(undefined, msg('a'))).toBe(false);
    expect(l.admit(undefined, msg('a'))).toBe(false);
  });

  it('errors are remembered too, Unavailable included: a late copy never does the work after all', () => {
    const { l, answered } = setup();
    l.admit('k', msg('a'));
    const unavailable = {
      ok: false as const,
      error: { code: 'Unavailable' as const, message: 'worker gone', retryable: true },
    };
    l.settle('k', unavailable);
    expect(answered).toEqual([['a', unavailable]]);
    expect(l.admit('k', msg('b'))).toBe(true);
    expect(answered.at(-1)).toEqual(['b', unavailable]);
  });

  it('answers are forgotten after the ttl and beyond the size cap, oldest first', () => {
    const { l } = setup(60_000, 2);
    for (const k of ['a', 'b', 'c']) {
      l.admit(k, undefined);
      l.settle(k, OK);
    }
    expect(l.size.done).toBe(2);
    expect(l.admit('a', undefined)).toBe(false);
    expect(l.admit('c', undefined)).toBe(true);
    const short = setup(-1);
    short.l.settle('x', OK);
    expect(short.l.admit('x', undefined)).toBe(false);
  });
});
