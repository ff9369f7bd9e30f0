/**
 * The CLI's argument rules on any input: `parse` (src/cli/args.ts) answers the flags or InvalidArgument,
 * and gives back whatever flags it is handed; `duration` and `parseDuration` (src/util/duration.ts)
 * answer a whole, finite number of milliseconds or InvalidArgument naming the flag, and read back every
 * duration written with a unit; a node name (src/bus/node-name.ts) is accepted exactly when it is 1 to
 * 64 ASCII letters, digits, `_` or `-`.
 */
import { describe, expect, vi } from 'vitest';
import { duration, need, parse } from '../../../src/cli/args.ts';
import { isNodeName, nodeName } from '../../../src/bus/node-name.ts';
import { DURATION_UNITS, matchDuration, parseDuration } from '../../../src/util/duration.ts';
import { fc, test } from './prop.ts';
import { RUNS, TIMEOUT_MS } from './runs.ts';
import { verdict } from './verdict.ts';
import { wireString, wireValue } from './wire.ts';

vi.setConfig({ testTimeout: TIMEOUT_MS });

const OPTIONS = {
  grace: { type: 'string' },
  label: { type: 'string', multiple: true },
  force: { type: 'boolean' },
} as const;
const arg = fc.oneof(
  fc.constantFrom('--nats', '--node', '--json', '-h', '--help', '--timeout', '--timeout=5s', '--grace', '--label'),
  fc.constantFrom('--force', '--force=1', '--', '-', '--unknown', '-x', '-hx', '--=', '--json=true', 'start', '30s'),
  wireString,
);
const durationish = fc.oneof(
  wireString,
  fc.stringMatching(/^ ?\d{0,6}(\.\d{0,3})?(ms|s|m|h|d|w|S|)? ?$/),
  fc.nat(400).chain((n) => fc.constantFrom('ms', 's', 'd').map((u) => `1${'0'.repeat(n)}${u}`)),
);

describe('parse', () => {
  test.prop([fc.array(arg, { maxLength: 6 })], { numRuns: RUNS })('any argv: the flags, or InvalidArgument', (argv) => {
    const r = verdict(() => parse(argv, OPTIONS));
    if (!r.ok) return;
    for (const flag of ['timeout', 'grace']) verdict(() => duration(r.value, flag, 1000), { names: [`--${flag}`] });
    verdict(() => need(r.value, 0, 'task ID'), { names: ['task ID'] });
  });

  const values = fc.record(
    {
      node: fc.stringMatching(/^[a-z0-9-]{1,8}$/),
      timeout: fc.stringMatching(/^\d{1,4}(ms|s|m)$/),
      json: fc.boolean(),
      label: fc.array(fc.stringMatching(/^[a-z]{1,4}=[a-z]{0,4}$/), { minLength: 1, maxLength: 3 }),
    },
    { requiredKeys: [] },
  );
  test.prop([values, fc.array(fc.stringMatching(/^[a-z0-9]{1,6}$/), { maxLength: 3 }), fc.boolean()], {
    numRuns: RUNS,
  })('gives back the flags it is handed, in either spelling', (v, positionals, inline) => {
    const argv = Object.entries(v).flatMap(([k, x]) =>
      typeof x === 'boolean'
        ? x
          ? [`--${k}`]
          : []
        : // a value that starts with '-' must be written inline (node's parseArgs refuses `--node -a` as ambiguous)
          (Array.isArray(x) ? x : [x]).flatMap((s) => (inline || s.startsWith('-') ? [`--${k}=${s}`] : [`--${k}`, s])),
    );
    const p = parse([...argv, ...positionals], OPTIONS);
    expect(p.positionals).toEqual(positionals);
    for (const [k, x] of Object.entries(v)) expect(p.values[k]).toEqual(x === false ? false : x);
  });
});

describe('durations', () => {
  test.prop([durationish], { numRuns: RUNS })(
    'parseDuration: a whole, finite number of ms (matchDuration agrees), or InvalidArgument naming the flag',
    (v) => {
      const r = verdict(() => parseDuration(v, '--timeout'), { names: ['--timeout'] });
      expect(matchDuration(v)).toBe(r.ok ? r.value : undefined);
      if (r.ok) expect(Number.isSafeInteger(r.value) && r.value >= 0, `${v} → ${r.value}`).toBe(true);
    },
  );

  const unit = fc.constantFrom(...(Object.keys(DURATION_UNITS) as (keyof typeof DURATION_UNITS)[]));
  test.prop([fc.nat(10_000_000), unit, fc.constantFrom('', ' ', '  ')], { numRuns: RUNS })(
    'reads back every whole duration written with a unit',
    (n, u, pad) => {
      expect(parseDuration(`${pad}${n}${u}${pad}`, '--x')).toBe(n * DURATION_UNITS[u]);
    },
  );
  test.prop([fc.nat(1e9), unit], { numRuns: RUNS })('reads back decimals, rounded to the millisecond', (n, u) => {
    const text = (n / 1000).toFixed(3);
    expect(parseDuration(`${text}${u}`, '--x')).toBe(Math.round(Number(text) * DURATION_UNITS[u]));
  });
  test.prop([fc.integer({ min: 1, max: 1e9 })], { numRuns: RUNS })('refuses a bare number other than 0', (n) => {
    const r = verdict(() => parseDuration(String(n), '--grace'), { names: ['--grace', 'has no unit'] });
    expect(r.ok).toBe(false);
  });
  test('regression: a duration too large for a number (1e400 ms) is InvalidArgument, not Infinity', () => {
    expect(() => parseDuration(`1${'0'.repeat(400)}ms`, '--timeout')).toThrowError(
      expect.objectContaining({ code: 'InvalidArgument', message: expect.stringContaining('--timeout') }),
    );
  });
});

/** The documented rule, written without a regular expression. */
const ALLOWED = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-';
const ruleSays = (v: unknown) =>
  typeof v === 'string' && v.length >= 1 && v.length <= 64 && [...v].every((c) => ALLOWED.includes(c));

describe('node names', () => {
  const nameish = fc.oneof(
    wireValue(),
    fc.string({ unit: fc.constantFrom(...ALLOWED, '.', '~', '*', '>', ' ', 'é', '\n'), maxLength: 70 }),
    fc.nat({ max: 70 }).map((n) => 'n'.repeat(n)),
  );
  test.prop([nameish], { numRuns: RUNS })('accepted exactly when the rule says so; else InvalidArgument', (v) => {
    expect(isNodeName(v)).toBe(ruleSays(v));
    const r = verdict(() => nodeName(v, 'node name (--node / CORRAL_NODE)'), { names: ['--node'] });
    expect(r.ok).toBe(ruleSays(v));
    if (r.ok) expect(r.value).toBe(v);
  });
  test('regression: a node name decoded as bigint (a MessagePack uint64) is InvalidArgument, not a TypeError', () => {
    expect(() => nodeName(2n ** 64n - 1n)).toThrowError(expect.objectContaining({ code: 'InvalidArgument' }));
  });
});
