/**
 * What a decoded request can hold, as fast-check arbitraries: every value is passed through the codec
 * once, so it is exactly what a handler receives (bigint for 64-bit integers, Buffer for bin, Date for
 * timestamps, `__proto__` keys renamed). `broken` takes a valid request and breaks one field of it, at
 * any depth: replaced by a wire value or removed, with the path of what it changed.
 */
import fc from 'fast-check';
import { decode, encode } from '../../../src/bus/codec.ts';

/** Strings parsers mistake for something else: empties, NUL, paths, numbers, prototype names, long text. */
export const TRICKY_STRINGS = [
  '',
  ' ',
  '\0',
  'a\0b',
  '/',
  '/\0',
  '.',
  '..',
  '/..',
  '../x',
  '-1',
  '0',
  '1e3',
  'NaN',
  'true',
  'null',
  'constructor',
  'toString',
  '__proto__',
  'hasOwnProperty',
  'valueOf',
  'SIGKILL',
  'KILL',
  '9',
  'x'.repeat(300),
  'é',
  '\u{1F600}',
  'a.b',
  'a~b',
  '*',
  '>',
  'file://',
];
const TRICKY_NUMBERS = [
  0,
  -0,
  1,
  -1,
  0.5,
  -1.5,
  2 ** 31,
  2 ** 32 - 1,
  2 ** 32,
  2 ** 53,
  -(2 ** 53),
  Number.MAX_SAFE_INTEGER,
  Number.MAX_VALUE,
  Number.MIN_VALUE,
  NaN,
  Infinity,
  -Infinity,
  64,
  65,
  65535,
  65536,
  1000,
  1_000_000,
];
/** What a 64-bit MessagePack integer decodes to, small ones included (msgpackr gives bigint for all). */
const TRICKY_BIGINTS = [0n, 5n, -1n, 2n ** 53n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 64n - 1n];

/** Field names of Corral's requests, so that random maps often hit a real field. */
export const COMMON_KEYS = [
  'id',
  'execId',
  'requestId',
  'bundle',
  'rootfs',
  'type',
  'source',
  'options',
  'signal',
  'all',
  'timeoutMs',
  'width',
  'height',
  'spec',
  'args',
  'env',
  'cwd',
  'user',
  'uid',
  'gid',
  'resources',
  'memory',
  'limit',
  'cpu',
  'pids',
  'sandboxId',
  'containerId',
  'target',
  'mounts',
  'path',
  'mode',
  'opId',
  'deadlineMs',
];

export const throughCodec = (v: unknown): unknown => decode(encode(v));

export const wireString = fc.oneof(
  fc.constantFrom(...TRICKY_STRINGS),
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'binary', maxLength: 12 }),
);

export const wireScalar: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, undefined, true, false),
  fc.constantFrom(...TRICKY_NUMBERS),
  fc.integer(),
  fc.double(),
  fc.constantFrom(...TRICKY_BIGINTS),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
  wireString,
  fc.uint8Array({ maxLength: 8 }),
  fc.date({ min: new Date(0), max: new Date(2 ** 40), noInvalidDate: true }),
);

/** Any decoded value (maps, lists, scalars), at most `maxDepth` containers deep; map keys favour `keys`. */
export function wireValue(keys: readonly string[] = COMMON_KEYS, maxDepth = 3): fc.Arbitrary<unknown> {
  const key = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...keys) }, { weight: 1, arbitrary: wireString });
  const { value } = fc.letrec<{ value: unknown }>((tie) => ({
    value: fc.oneof(
      { maxDepth, depthIdentifier: 'wire' },
      wireScalar,
      fc.array(tie('value'), { maxLength: 4, depthIdentifier: 'wire' }),
      fc.dictionary(key, tie('value'), { maxKeys: 5, depthIdentifier: 'wire' }),
    ),
  }));
  return value.map(throughCodec);
}

/** A decoded map with random fields (what a worker op receives: the harness checks only that it is a map). */
export const wireMap = (keys: readonly string[] = COMMON_KEYS): fc.Arbitrary<Record<string, unknown>> =>
  fc
    .dictionary(fc.oneof(fc.constantFrom(...keys), wireString), wireValue(keys, 2), { maxKeys: 6 })
    .map((m) => throughCodec(m) as Record<string, unknown>);

export type Path = readonly (string | number)[];
export interface Broken {
  value: unknown;
  /** What was replaced or removed. */
  path: Path;
  /**
   * What a refusal may name: the path's fields, a field of what was there (now missing), or a field
   * inside the replacement (a map put in place of a list of maps is refused for a field it lacks).
   */
  names: string[];
}

/** A list or a plain map (fast-check's records may have a null prototype), not bytes or a Date. */
const isNode = (v: unknown): v is Record<string | number, unknown> =>
  typeof v === 'object' &&
  v !== null &&
  (Array.isArray(v) || [Object.prototype, null].includes(Object.getPrototypeOf(v) as object | null));

/** Every path to a node below the root, parents first. */
export function pathsOf(v: unknown, at: Path = []): Path[] {
  if (!isNode(v)) return [];
  const keys: (string | number)[] = Array.isArray(v) ? v.map((_, i) => i) : Object.keys(v);
  return keys.flatMap((k) => [[...at, k], ...pathsOf(v[k], [...at, k])]);
}

/** A copy of `v` with the node at `path` replaced by `to`, or removed when `to` is `drop`. */
export function changeAt(v: unknown, path: Path, to: { drop: true } | { set: unknown }): unknown {
  const [k, ...rest] = path;
  if (k === undefined) return 'set' in to ? to.set : undefined;
  if (!isNode(v)) return v;
  if (Array.isArray(v)) {
    const list: unknown[] = [...v];
    if (rest.length > 0) list[Number(k)] = changeAt(v[Number(k)], rest, to);
    else if ('set' in to) list[Number(k)] = to.set;
    else list.splice(Number(k), 1);
    return list;
  }
  const map: Record<string | number, unknown> = { ...v };
  if (rest.length > 0) map[k] = changeAt(v[k], rest, to);
  else if ('set' in to) map[k] = to.set;
  else delete map[k];
  return map;
}

const at = (v: unknown, path: Path): unknown => path.reduce<unknown>((x, k) => (isNode(x) ? x[k] : undefined), v);
const keysIn = (v: unknown): string[] =>
  isNode(v) ? Object.entries(v).flatMap(([k, x]) => [...(Array.isArray(v) ? [] : [k]), ...keysIn(x)]) : [];

/** `valid` with one field (any depth) replaced by a wire value or removed. */
export function broken(valid: fc.Arbitrary<unknown>, replacement = wireValue()): fc.Arbitrary<Broken> {
  const change = fc.oneof(
    { weight: 1, arbitrary: fc.constant({ drop: true } as const) },
    { weight: 4, arbitrary: replacement.map((set) => ({ set })) },
  );
  return fc.tuple(valid, fc.nat(), change).map(([v, pick, to]) => {
    const paths = pathsOf(v);
    const path = paths[pick % Math.max(1, paths.length)] ?? [];
    const inside = [...keysIn(at(v, path)), ...('set' in to ? keysIn(to.set) : [])];
    const names = path.length === 0 ? [] : [...path.filter((k) => typeof k === 'string'), ...inside];
    return { value: changeAt(v, path, to), path, names };
  });
}
