/**
 * config.json (src/kata/oci.ts `parseSpec`; src/kata/resources.ts for `linux.resources` and the `update`
 * verb's resources) on any text, on JSON of any shape and on valid specs with one field broken: the
 * parser answers a spec or InvalidArgument naming the field (Kata's texts), never another error, and a
 * spec it answers is deep-frozen and parses again to itself. `updateLimits` and `cgroupLimits` answer
 * cgroup v2 writes or InvalidArgument naming the field (resources that are not maps, such as bytes or a
 * timestamp, are refused); every write is one the guest accepts (an allowed file, once, a value in the
 * kernel's syntax), and cpu.shares → cpu.weight is runc's formula.
 */
import { describe, expect, vi } from 'vitest';
import { parseSpec } from '../../../src/kata/oci.ts';
import { type CgroupLimit, cgroupLimits, cpuSharesToWeight, updateLimits } from '../../../src/kata/resources.ts';
import { ociResources, ociSpec } from './oci-specs.ts';
import { fc, test } from './prop.ts';
import { RUNS, TIMEOUT_MS } from './runs.ts';
import { verdict } from './verdict.ts';
import { broken, throughCodec, TRICKY_STRINGS, wireValue } from './wire.ts';

vi.setConfig({ testTimeout: TIMEOUT_MS });

/** JSON values, biased to what a spec's fields refuse: wrong types, out-of-range and unsafe integers. */
const json = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(-1, 2 ** 32, 2 ** 53, -(2 ** 53), 1.5, 1e300, ...TRICKY_STRINGS),
);
const text = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.json({ maxDepth: 3 }),
  broken(ociSpec, json).map((b) => JSON.stringify(b.value) ?? ''),
  ociSpec.map((s) => JSON.stringify(s).slice(0, -1)),
);

function frozen(v: unknown): boolean {
  return typeof v !== 'object' || v === null || (Object.isFrozen(v) && Object.values(v).every(frozen));
}

describe('parseSpec', () => {
  test.prop([text], { numRuns: RUNS })('any text: a spec or InvalidArgument', (t) => {
    const r = verdict(() => parseSpec(t));
    if (r.ok) expect(frozen(r.value)).toBe(true);
  });

  test.prop([broken(ociSpec, json)], { numRuns: RUNS })(
    'a valid spec with one field broken: a spec, or InvalidArgument naming that field',
    ({ value, names }) => {
      verdict(() => parseSpec(JSON.stringify(value)), { names });
    },
  );

  test.prop([ociSpec], { numRuns: RUNS })('a valid spec is accepted, and its result parses to itself', (s) => {
    const once = parseSpec(JSON.stringify(s));
    expect(frozen(once)).toBe(true);
    expect(parseSpec(JSON.stringify(once))).toEqual(once);
    expect(once.process.args).toEqual(s.process.args);
  });
});

const SYNTAX: Record<CgroupLimit['file'], RegExp> = {
  'memory.max': /^(max|[1-9]\d*)$/,
  'memory.high': /^(max|[1-9]\d*)$/,
  'memory.swap.max': /^(max|\d+)$/,
  'cpu.max': /^(max|[1-9]\d*)( [1-9]\d*)?$/,
  'cpu.weight': /^[1-9]\d*$/,
  'pids.max': /^(max|[1-9]\d*)$/,
  'cpuset.cpus': /^\d+(-\d+)?(,\d+(-\d+)?)*$/,
};
function acceptedByTheGuest(writes: CgroupLimit[]) {
  expect(new Set(writes.map((w) => w.file)).size).toBe(writes.length);
  for (const w of writes) expect(w.value).toMatch(SYNTAX[w.file]);
  const weight = writes.find((w) => w.file === 'cpu.weight');
  if (weight) expect(Number(weight.value)).toSatisfy((n: number) => n >= 1 && n <= 10000);
}

const KEYS = ['memory', 'cpu', 'pids', 'limit', 'swap', 'quota', 'period', 'shares', 'cpus'];
const updateResources = ociResources.map(({ memory, ...r }) =>
  throughCodec({ ...r, ...(memory ? { memory: { limit: memory.limit } } : {}) }),
);

describe('update: resources', () => {
  /** What `update` may take as its sections: maps, not bytes or a timestamp (msgpackr's Buffer and Date). */
  const mapsAll = (v: unknown, depth = 0): boolean =>
    depth > 1 ||
    (typeof v === 'object' &&
      v !== null &&
      [Object.prototype, null].includes(Object.getPrototypeOf(v) as object | null) &&
      ['memory', 'cpu', 'pids'].every((k) => {
        const s = (v as Record<string, unknown>)[k];
        return s === undefined || s === null || mapsAll(s, depth + 1);
      }));
  test.prop([wireValue(KEYS)], { numRuns: RUNS })(
    'any decoded value: writes (for maps only), or InvalidArgument',
    (v) => {
      const r = verdict(() => updateLimits(v), { names: ['update: resources'] });
      if (!r.ok) return;
      acceptedByTheGuest(r.value);
      expect(mapsAll(v), 'resources (or a section of them) that are not a map were accepted').toBe(true);
    },
  );
  test.prop([broken(updateResources, wireValue(KEYS, 2))], { numRuns: RUNS })(
    'valid resources with one field broken: writes, or InvalidArgument naming that field',
    ({ value, names }) => {
      const r = verdict(() => updateLimits(value), { names });
      if (r.ok) acceptedByTheGuest(r.value);
    },
  );
  test('regression: a limit sent as a MessagePack int64 beyond 2^53 is InvalidArgument, not a TypeError', () => {
    const resources = throughCodec({ memory: { limit: 2n ** 63n - 1n } });
    expect(() => updateLimits(resources)).toThrowError(expect.objectContaining({ code: 'InvalidArgument' }));
  });
  test.each([
    ['bytes', new Uint8Array([1])],
    ['a timestamp', new Date(0)],
    ['a memory section of bytes', { memory: new Uint8Array([1]) }],
  ])('regression: resources sent as %s are InvalidArgument, not an update that changes nothing', (_what, v) => {
    expect(() => updateLimits(throughCodec(v))).toThrowError(expect.objectContaining({ code: 'InvalidArgument' }));
  });
});

describe('linux.resources', () => {
  test.prop([ociResources], { numRuns: RUNS })('writes the guest accepts, or InvalidArgument naming the field', (r) => {
    const out = verdict(() => cgroupLimits(r), { names: ['linux.resources.'] });
    if (out.ok) acceptedByTheGuest(out.value);
  });
  test.prop([fc.integer({ min: 1, max: 300_000 }), fc.integer({ min: 1, max: 300_000 })], { numRuns: RUNS })(
    "cpu.shares → cpu.weight is runc's: monotone, 1..10000, 2 → 1, 1024 → 100, 262144 → 10000",
    (a, b) => {
      const [lo, hi] = a <= b ? [a, b] : [b, a];
      expect(cpuSharesToWeight(lo)).toBeLessThanOrEqual(cpuSharesToWeight(hi));
      expect([cpuSharesToWeight(2), cpuSharesToWeight(1024), cpuSharesToWeight(262144)]).toEqual([1, 100, 10000]);
      expect(cpuSharesToWeight(hi)).toSatisfy((w: number) => w >= 1 && w <= 10000);
    },
  );
});
