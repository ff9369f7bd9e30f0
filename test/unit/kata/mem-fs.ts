/** An in-memory KataFs for rule tests: files, directories, symlinks and injected errno failures. */
import * as path from 'node:path';
import type { KataFs } from '../../../src/kata/fs.ts';

export type MemEntry = string | { size: number } | { dir: true } | { link: string } | { error: string };

const fail = (code: string, p: string) => Object.assign(new Error(`${code}: ${p}`), { code });

export function memFs(entries: Record<string, MemEntry>): KataFs {
  const map = new Map(Object.entries(entries).map(([k, v]) => [path.resolve(k), v]));
  const implicitDir = (p: string) => p === '/' || [...map.keys()].some((k) => k.startsWith(`${p}/`));

  function real(p: string, depth = 0): string {
    if (depth > 40) throw fail('ELOOP', p);
    let cur = '/';
    for (const part of path.resolve(p).split('/').filter(Boolean)) {
      const next = path.join(cur, part);
      const e = map.get(next);
      if (e !== undefined && typeof e === 'object' && 'error' in e) throw fail(e.error, next);
      if (e !== undefined && typeof e === 'object' && 'link' in e) cur = real(path.resolve(cur, e.link), depth + 1);
      else if (e !== undefined || implicitDir(next)) cur = next;
      else throw fail('ENOENT', next);
    }
    return cur;
  }
  const entry = (p: string) => {
    const r = real(p);
    return { r, e: map.get(r) };
  };
  const kind = (p: string) => {
    try {
      const { r, e } = entry(p);
      if (e === undefined) return implicitDir(r) ? 'dir' : undefined;
      return typeof e === 'object' && 'dir' in e ? 'dir' : 'file';
    } catch {
      return undefined;
    }
  };
  return {
    exists: async (p) => kind(p) !== undefined,
    isFile: async (p) => kind(p) === 'file',
    isDirectory: async (p) => kind(p) === 'dir',
    size: async (p) => {
      const { r, e } = entry(p);
      if (typeof e === 'string') return Buffer.byteLength(e);
      if (e && typeof e === 'object' && 'size' in e) return e.size;
      throw fail('EISDIR', r);
    },
    realpath: async (p) => real(p),
    readFile: async (p) => {
      const { r, e } = entry(p);
      if (typeof e === 'string') return e;
      if (e && typeof e === 'object' && 'size' in e) return '';
      throw fail('EISDIR', r);
    },
    readdir: async (p) => {
      const r = real(p);
      if (kind(r) !== 'dir') throw fail('ENOTDIR', r);
      return [
        ...new Set(
          [...map.keys()]
            .filter((k) => k.startsWith(`${r}/`))
            .map((k) => k.slice(r.length + 1).split('/')[0] as string),
        ),
      ];
    },
  };
}
