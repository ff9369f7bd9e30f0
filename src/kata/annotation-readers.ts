/** Typed readers over one annotation map (Kata's parse errors, word for word). */
import { err } from '../errors.ts';
import { parseBool, parseUint } from './strconv.ts';

export type Annotations = Readonly<Record<string, string>>;

const U32 = 0xffff_ffffn;

/** Typed readers over one annotation map; each returns undefined when the key is absent. */
export function readers(a: Annotations) {
  const get = (k: string) => (Object.hasOwn(a, k) ? a[k] : undefined);
  const bool = (k: string) => {
    const v = get(k);
    if (v === undefined) return undefined;
    const b = parseBool(v);
    if (b === undefined)
      throw err.invalid(`Error parsing annotation for ${k}: Please specify boolean value 'true|false'`);
    return b;
  };
  const uint = (k: string, max = U32) => {
    const v = get(k);
    if (v === undefined) return undefined;
    const n = parseUint(v);
    if (n === undefined) throw err.invalid(`Error parsing annotation for ${k}: Please specify positive numeric value`);
    if (n > max)
      throw err.invalid(`Error parsing annotation for ${k}: The number exceeds the maximum allowed for its type`);
    return Number(n);
  };
  return { get, bool, uint };
}
