/** Go `strconv` parsing, exactly (used where Kata parses annotation strings). */

const U64 = (1n << 64n) - 1n;
const I64 = (1n << 63n) - 1n;

/** `strconv.ParseBool`: `1 t T TRUE true True` / `0 f F FALSE false False`; anything else → undefined. */
export function parseBool(s: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(s)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(s)) return false;
  return undefined;
}

/** `strconv.ParseUint(s, 10, 64)`: digits only (no sign), at most 2^64-1; otherwise undefined. */
export function parseUint(s: string): bigint | undefined {
  if (!/^[0-9]+$/.test(s)) return undefined;
  const v = BigInt(s);
  return v <= U64 ? v : undefined;
}

/** `strconv.ParseInt(s, 10, 64)`: optional sign, then digits, within int64; otherwise undefined. */
export function parseInt64(s: string): bigint | undefined {
  if (!/^[+-]?[0-9]+$/.test(s)) return undefined;
  const v = BigInt(s);
  return v >= -I64 - 1n && v <= I64 ? v : undefined;
}
