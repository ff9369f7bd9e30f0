/**
 * The Task API's body parsers (src/bus/task-requests.ts, src/bus/exec-requests.ts, the idempotency key
 * of src/agent/idempotency.ts) on any decoded body and on valid bodies with one field broken: each
 * answers a request or InvalidArgument naming the field, never another error. What they accept follows
 * the documented rules: signals 1..64 by number or name, containerd's exec-id rule, no NUL in any
 * string, the body's fields carried through unchanged.
 */
import { describe, expect, vi } from 'vitest';
import { parseExec } from '../../../src/bus/exec-requests.ts';
import {
  execIdOf,
  parseCreate,
  parseKill,
  parseProcessRef,
  parseResize,
  parseSignal,
  parseWait,
} from '../../../src/bus/task-requests.ts';
import { requestKey } from '../../../src/agent/idempotency.ts';
import { fc, test } from './prop.ts';
import { RUNS, TIMEOUT_MS } from './runs.ts';
import { bodyOf, type Verb } from './task-bodies.ts';
import { verdict } from './verdict.ts';
import { broken, throughCodec, wireString, wireValue } from './wire.ts';

vi.setConfig({ testTimeout: TIMEOUT_MS });

const PARSERS = {
  create: parseCreate,
  kill: parseKill,
  wait: parseWait,
  start: parseProcessRef,
  resize: parseResize,
  exec: parseExec,
} satisfies Partial<Record<Verb, (b: unknown) => unknown>>;
type Parsed = keyof typeof PARSERS;
const NAMES = Object.keys(PARSERS) as Parsed[];

/** Every string in a parsed request: none may hold NUL (the guest's strings are C strings). */
const strings = (v: unknown): string[] =>
  typeof v === 'string'
    ? [v]
    : v && typeof v === 'object'
      ? Object.values(v as Record<string, unknown>).flatMap(strings)
      : [];

describe.each(NAMES)('%s body', (verb) => {
  const parse = PARSERS[verb] as (b: unknown) => unknown;
  test.prop([wireValue()], { numRuns: RUNS })('any decoded body: a request or InvalidArgument', (body) => {
    verdict(() => parse(body));
  });
  test.prop([broken(bodyOf(verb))], { numRuns: RUNS })(
    'a valid body with one field broken: a request, or InvalidArgument naming that field',
    ({ value, names }) => {
      const r = verdict(() => parse(value), { names });
      if (r.ok) for (const s of strings(r.value)) expect(s).not.toContain('\0');
    },
  );
  test.prop([bodyOf(verb)], { numRuns: RUNS })('a valid body is accepted, its id unchanged', (body) => {
    expect((parse(body) as { id: string }).id).toBe((body as { id: string }).id);
  });
});

const SIGNALS: Record<string, number> = {
  HUP: 1,
  INT: 2,
  QUIT: 3,
  KILL: 9,
  USR1: 10,
  USR2: 12,
  TERM: 15,
  CONT: 18,
  STOP: 19,
};
/** The documented rule, written independently: 1..64 as a number or digits, or a name with or without SIG. */
function expectedSignal(v: unknown): number | undefined {
  if (v === undefined || v === null) return 15;
  if (typeof v === 'number') return Number.isInteger(v) && v >= 1 && v <= 64 ? v : undefined;
  if (typeof v !== 'string') return undefined;
  if (/^\d+$/.test(v)) return expectedSignal(Number(v));
  const name = v.toUpperCase().replace(/^SIG/, '');
  return Object.hasOwn(SIGNALS, name) ? SIGNALS[name] : undefined;
}

describe('signals, exec ids, idempotency keys', () => {
  const signalish = fc.oneof(
    wireValue(),
    fc.integer({ min: -5, max: 70 }),
    fc.constantFrom(...Object.keys(SIGNALS)).chain((n) => fc.constantFrom(n, `SIG${n}`, n.toLowerCase(), `sig${n}`)),
    fc.stringMatching(/^\d{1,3}$/),
  );
  test.prop([signalish], { numRuns: RUNS })('parseSignal follows the documented rule, else InvalidArgument', (v) => {
    const r = verdict(() => parseSignal(v), { names: ['signal'] });
    expect(r.ok ? r.value : undefined).toBe(expectedSignal(v));
  });

  const EXEC_ID = /^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/;
  const execIdish = fc.oneof(
    wireValue(),
    fc.stringMatching(/^[A-Za-z0-9._~ -]{0,80}$/),
    fc.constantFrom('a'.repeat(76), 'a'.repeat(77), 'a..b', 'a-', '-a', 'a_b.c-d'),
  );
  test.prop([execIdish], { numRuns: RUNS })("execIdOf accepts exactly containerd's rule (≤ 76)", (v) => {
    const r = verdict(() => execIdOf({ execId: v }), { names: ['execId'] });
    const absent = v === undefined || v === null || v === '';
    const valid = typeof v === 'string' && v.length <= 76 && EXEC_ID.test(v);
    expect(r.ok).toBe(absent || valid);
    if (r.ok) expect(r.value).toBe(absent ? undefined : v);
  });

  test.prop([fc.record({ id: fc.oneof(wireString, wireValue()), requestId: fc.oneof(wireString, wireValue()) })], {
    numRuns: RUNS,
  })('requestKey: a key, none, or InvalidArgument naming requestId', (body) => {
    const r = verdict(() => requestKey(body), { names: ['requestId'] });
    if (r.ok && r.value !== undefined) expect(r.value).toBe(`${String(body.id)}/${String(body.requestId)}`);
  });
});

describe('regressions', () => {
  test('regression: kill with a 64-bit signal (a MessagePack uint64) is InvalidArgument, not a TypeError', () => {
    expect(() => parseKill(throughCodec({ id: 'ab', signal: 2n ** 64n - 1n }))).toThrowError(
      expect.objectContaining({ code: 'InvalidArgument' }),
    );
  });
  test('regression: an execId sent as a MessagePack uint64 is InvalidArgument, not a TypeError', () => {
    expect(() => parseProcessRef(throughCodec({ id: 'ab', execId: 5n }))).toThrowError(
      expect.objectContaining({ code: 'InvalidArgument' }),
    );
  });
  test('regression: a rootfs entry without type is refused naming rootfs[0].type, not just "type"', () => {
    expect(() => parseCreate({ id: 'ab', rootfs: [{ source: '/dev/sda' }] })).toThrowError(
      expect.objectContaining({ code: 'InvalidArgument', message: expect.stringContaining('rootfs[0].type') }),
    );
  });
  test('regression: a rootfs option holding NUL is refused at the edge, as every other string is', () => {
    const rootfs = [{ type: 'overlay', source: 'overlay', options: ['lowerdir=/a\0'] }];
    expect(() => parseCreate({ id: 'ab', rootfs })).toThrowError(
      expect.objectContaining({ code: 'InvalidArgument', message: expect.stringContaining('rootfs[0].options') }),
    );
  });
  test("regression: exec's spec.cwd with NUL is InvalidArgument (every other string refuses NUL)", () => {
    expect(() => parseExec({ id: 'ab', execId: 'e1', spec: { args: ['sh'], cwd: '/\0' } })).toThrowError(
      expect.objectContaining({ code: 'InvalidArgument', message: expect.stringContaining('cwd') }),
    );
  });
});
