/** TOML text → typed tables, per the schemas in config-types.ts. */
import { parse, type TomlTable } from 'smol-toml';
import { err } from '../errors.ts';
import { type Decoded, type Kind, type Raw, type ValueOf } from './config-types.ts';
import { isRecord } from './util.ts';

/** Parse TOML; integers come back as bigint so their Go ranges can be checked exactly. */
export function parseToml(text: string): TomlTable {
  try {
    return parse(text, { integersAsBigInt: true, unsafeKeyBehaviour: 'throw' });
  } catch (e) {
    const { line, column } = e as { line?: number; column?: number };
    const where = line === undefined ? '' : ` (line ${line}, column ${column})`;
    throw err.invalid(`${(e as Error).message.split('\n')[0]}${where}`, e);
  }
}

/**
 * Merge a drop-in into the document in place, key by key at every table level: a drop-in's
 * `[hypervisor.qemu] path = ...` changes that one key and keeps the rest (Kata does this for
 * `[hypervisor.X]` and `[agent.X]`; its struct decoding gives the same result for the other tables).
 * Non-table values, arrays included, replace.
 */
export function mergeInto(target: Record<string, unknown>, src: Readonly<Record<string, unknown>>): void {
  for (const [k, v] of Object.entries(src)) {
    const t = target[k];
    if (isRecord(t) && isRecord(v)) mergeInto(t, v);
    else target[k] = v;
  }
}

const RANGES: Partial<Record<Kind, readonly [bigint, bigint]>> = {
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  uint32: [0n, 2n ** 32n - 1n],
  uint64: [0n, BigInt(Number.MAX_SAFE_INTEGER)],
  int64: [-BigInt(Number.MAX_SAFE_INTEGER), BigInt(Number.MAX_SAFE_INTEGER)],
};

function value<K extends Kind>(kind: K, v: unknown, where: string): ValueOf<K> {
  const range = RANGES[kind];
  if (range) {
    if (typeof v !== 'bigint' || v < range[0] || v > range[1])
      throw err.invalid(`${where} must be an integer from ${range[0]} to ${range[1]}`);
    return Number(v) as ValueOf<K>;
  }
  const ok =
    kind === 'string'
      ? typeof v === 'string'
      : kind === 'bool'
        ? typeof v === 'boolean'
        : Array.isArray(v) && v.every((x) => typeof x === 'string');
  if (!ok)
    throw err.invalid(
      `${where} must be ${kind === 'string' ? 'a string' : kind === 'bool' ? 'a boolean' : 'an array of strings'}`,
    );
  return v as ValueOf<K>;
}

/**
 * Check one table against its schema. Unknown keys are skipped with a warning (Kata ignores them,
 * and warns for drop-ins); a known key of the wrong type is an InvalidArgument naming `where.key`.
 */
export function decodeTable<S extends Readonly<Record<string, Kind>>>(
  schema: S,
  v: unknown,
  where: string,
  warnings: string[],
): Raw<S> {
  if (v === undefined) return {};
  if (!isRecord(v)) throw err.invalid(`${where} must be a table`);
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    const kind = Object.hasOwn(schema, k) ? schema[k] : undefined;
    if (kind === undefined) warnings.push(`unknown configuration key ${where}.${k} ignored`);
    else out[k] = value(kind, x, `${where}.${k}`);
  }
  return out as Raw<S>;
}

/** Named sub-tables (`[hypervisor.X]`, `[agent.X]`), each decoded. */
export function decodeNamed<S extends Readonly<Record<string, Kind>>>(
  schema: S,
  v: unknown,
  where: string,
  warnings: string[],
): Record<string, Raw<S>> {
  if (v === undefined) return {};
  if (!isRecord(v)) throw err.invalid(`${where} must be a table`);
  return Object.fromEntries(
    Object.entries(v).map(([name, t]) => [name, decodeTable(schema, t, `${where}.${name}`, warnings)]),
  );
}

const camel = (k: string) => k.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/**
 * Fill every schema key (defaults for absent or zero values, booleans only when absent; Go zero
 * values otherwise) and camelCase the keys.
 */
export function withDefaults<S extends Readonly<Record<string, Kind>>>(
  schema: S,
  raw: Raw<S>,
  defaults: Raw<S>,
): Decoded<S> {
  const zero = { string: '', bool: false, strings: [], int32: 0, uint32: 0, uint64: 0, int64: 0 } as const;
  // Every schema key, camelCased, with a value of its kind (decodeTable checked raw's): Object.fromEntries
  // and camel() cannot carry that to the type, so it is asserted once here.
  return Object.fromEntries(
    Object.entries(schema).map(([k, kind]) => {
      const v = raw[k as keyof S] as unknown;
      const d = defaults[k as keyof S] as unknown;
      const isZero = v === undefined || (kind !== 'bool' && kind !== 'strings' && (v === '' || v === 0));
      return [camel(k), isZero ? (d ?? (v === undefined ? zero[kind] : v)) : v];
    }),
  ) as Decoded<S>;
}
