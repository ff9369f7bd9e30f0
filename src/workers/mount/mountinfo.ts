/**
 * What is mounted, from `/proc/self/mountinfo` (proc(5)): one line per mount, in mount order, so
 * the last line for a mount point is the top of its stack.
 *
 *   36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
 *   (1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)    (10)         (11)
 *
 * The kernel escapes space, tab, newline and backslash in paths as `\ooo` octal.
 */
import { readFile } from 'node:fs/promises';

export interface MountEntry {
  id: number;
  parentId: number;
  /** `major:minor` of the filesystem. */
  dev: string;
  /** The directory of the filesystem that is mounted here (not `/` for bind mounts). */
  root: string;
  mountPoint: string;
  /** Per-mount options (`ro`/`rw`, `nosuid`...). */
  mountOptions: string[];
  fstype: string;
  source: string;
}

export const decodeOctal = (s: string): string =>
  s.includes('\\') ? s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))) : s;

export function parseMountInfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (sep < 0 || f.length < sep + 3) continue;
    out.push({
      id: Number(f[0]),
      parentId: Number(f[1]),
      dev: f[2] ?? '',
      root: decodeOctal(f[3] ?? ''),
      mountPoint: decodeOctal(f[4] ?? ''),
      mountOptions: (f[5] ?? '').split(','),
      fstype: decodeOctal(f[sep + 1] ?? ''),
      source: decodeOctal(f[sep + 2] ?? ''),
    });
  }
  return out;
}

/** A path as mountinfo writes it (space, tab, newline and backslash as `\ooo`). */
export const encodeOctal = (p: string): string =>
  p.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);

/**
 * The mounts, parsed. With `under`, only the lines that can be a mount at or below it are parsed (the
 * others cannot contain its encoded path): the result holds every such mount, and maybe a few others,
 * which `stackAt` and `mountsAtOrBelow` drop. A host with a thousand mounts made a full parse on every op
 * the mount worker's main cost (issue 13).
 */
export async function readMountInfo(path = '/proc/self/mountinfo', under?: string): Promise<MountEntry[]> {
  const text = await readFile(path, 'utf8');
  if (under === undefined) return parseMountInfo(text);
  const needle = ` ${encodeOctal(under)}`;
  if (!text.includes(needle)) return [];
  return parseMountInfo(
    text
      .split('\n')
      .filter((l) => l.includes(needle))
      .join('\n'),
  );
}

/** `p` equals `dir` or lies below it (both absolute and normalized). */
export const isAtOrBelow = (p: string, dir: string): boolean =>
  p === dir || p.startsWith(dir === '/' ? '/' : dir + '/');

/** The mounts stacked on exactly `path`, bottom first. */
export const stackAt = (entries: readonly MountEntry[], path: string): MountEntry[] =>
  entries.filter((e) => e.mountPoint === path);

/** Mounts at or below `path`, in mount order (the last is the one to unmount first). */
export const mountsAtOrBelow = (entries: readonly MountEntry[], path: string): MountEntry[] =>
  entries.filter((e) => isAtOrBelow(e.mountPoint, path));

export const isReadOnly = (e: MountEntry): boolean => e.mountOptions.includes('ro');

/** The visible mount that contains `realSource`: the longest mount point, the top of its stack. */
export function containingMount(entries: readonly MountEntry[], realSource: string): MountEntry | undefined {
  let best: MountEntry | undefined;
  for (const e of entries) {
    if (!isAtOrBelow(realSource, e.mountPoint)) continue;
    if (!best || e.mountPoint.length >= best.mountPoint.length) best = e;
  }
  return best;
}

/** The per-mount options a bind of `realSource` starts with: those of the mount it lies on. */
export const bindFlags = (entries: readonly MountEntry[], realSource: string): string[] =>
  containingMount(entries, realSource)?.mountOptions ?? [];

/**
 * The `(dev, root)` a bind mount of `realSource` would show in mountinfo: the visible mount that
 * contains the source (longest mount point, top of its stack), and the source's path inside it.
 */
export function bindIdentity(
  entries: readonly MountEntry[],
  realSource: string,
): { dev: string; root: string } | undefined {
  const best = containingMount(entries, realSource);
  if (!best) return undefined;
  const rest = best.mountPoint === '/' ? realSource : realSource.slice(best.mountPoint.length);
  const root = best.root === '/' ? rest || '/' : best.root + rest;
  return { dev: best.dev, root };
}
