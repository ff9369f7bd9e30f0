/** Go `filepath.Glob` membership, as Kata's `checkPathIsInGlobs` uses it for path allow-lists. */
import * as path from 'node:path';
import type { KataFs } from './fs.ts';

const esc = (c: string) => c.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');

/** Go's `getEsc`: one class character at `j`, possibly `\`-escaped; undefined = ErrBadPattern. */
function classChar(cs: readonly string[], j: number): [string, number] | undefined {
  let c = cs[j];
  if (c === undefined || c === '-' || c === ']') return undefined;
  if (c === '\\' && (c = cs[++j]) === undefined) return undefined;
  return ++j < cs.length ? [c, j] : undefined;
}

/**
 * Go `filepath.Match` syntax as a RegExp over the whole path: `*` and `?` never match `/`,
 * `[...]`/`[^...]` classes with ranges, `\` escapes. A malformed pattern gives undefined (Go's
 * ErrBadPattern, which Kata treats as "no match").
 */
export function globToRegExp(pattern: string): RegExp | undefined {
  const cs = [...pattern];
  let re = '';
  for (let i = 0; i < cs.length; i++) {
    const c = cs[i] as string;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '\\') {
      if (++i >= cs.length) return undefined;
      re += esc(cs[i] as string);
    } else if (c === '[') {
      let j = i + 1;
      const neg = cs[j] === '^';
      if (neg) j++;
      let body = '';
      for (let n = 0; ; n++) {
        if (cs[j] === ']' && n > 0) break;
        const lo = classChar(cs, j);
        if (!lo) return undefined;
        let hi = lo;
        if (cs[lo[1]] === '-') {
          const h = classChar(cs, lo[1] + 1);
          if (!h) return undefined;
          hi = h;
        }
        if ((lo[0].codePointAt(0) ?? 0) <= (hi[0].codePointAt(0) ?? 0))
          body += lo[0] === hi[0] ? esc(lo[0]) : `${esc(lo[0])}-${esc(hi[0])}`;
        j = hi[1];
      }
      re += `[${neg ? '^' : ''}${body}]`;
      i = j;
    } else re += esc(c);
  }
  return new RegExp(`^${re}$`, 's');
}

/**
 * True if `p` is one of the files the globs expand to: it matches a pattern and exists. The path
 * must be in clean absolute form (Go compares against Glob's cleaned output).
 */
export async function pathInGlobs(fs: KataFs, globs: readonly string[], p: string): Promise<boolean> {
  if (!path.isAbsolute(p) || path.resolve(p) !== p) return false;
  if (!globs.some((g) => globToRegExp(g)?.test(p))) return false;
  return fs.exists(p);
}
