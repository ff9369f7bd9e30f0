/** Small helpers shared by the Kata rule modules. */
import * as path from 'node:path';
import { CorralError } from '../errors.ts';

/** True if `p` lies strictly below `root` (both absolute, already resolved). */
export function isWithin(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
}

/** The same error (code, cause) with `prefix: ` in front of its message, as Go's `fmt.Errorf("%v: %v", ...)`. */
export const prefixed = (prefix: string, e: unknown): unknown =>
  e instanceof CorralError
    ? new CorralError(e.code, `${prefix}: ${e.message}`, { cause: e, retryable: e.retryable })
    : e;

/** `v` is one of `allowed` (narrowing it). */
export const oneOf = <T extends string>(allowed: readonly T[], v: string): v is T =>
  (allowed as readonly string[]).includes(v);

/** Go's `%v` of a string slice: `[a b c]`. */
export const goList = (xs: readonly string[]): string => `[${xs.join(' ')}]`;

export const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Freeze an object graph in place and return it (plain objects and arrays only). */
export function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}
