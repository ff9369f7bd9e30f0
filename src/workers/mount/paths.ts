/**
 * Which paths the mount worker may touch. A path is accepted when it is a string, absolute, normalized
 * (no `.`/`..`/empty segments, no trailing slash), strictly below one of the allowed roots, and no
 * symlink sits between the root and the path (a symlink under a root could point anywhere: `mount`
 * and `rm` would follow it). The roots themselves may be symlinks (`/var/run` → `/run`).
 *
 * The symlink check is done when the op starts; ops run under a path lock, so Corral itself cannot
 * race it. It is not a defence against another root process swapping directories meanwhile. A root's
 * real path is resolved once it exists and kept for the worker's life (a root is not moved under it).
 *
 * A `local` policy (the worker's own roots: Corral's run directories on this host) checks by lstat(2)
 * of each component below the root, the parents called synchronously: a metadata call there takes a few
 * µs, where an async fs call costs some 40 µs of the worker's one thread and each missing component (a
 * target not made yet) an Error object more (issue 13: 0.7 ms of mount-worker CPU per create). The path
 * itself, which may be a mount point, is lstat'ed asynchronously. Other policies (bind sources, which may
 * live on any filesystem) resolve with an async realpath(3), which cannot block the worker on a slow one.
 */
import { lstatSync, realpathSync, type Stats } from 'node:fs';
import { lstat, realpath } from 'node:fs/promises';
import { dirname, posix } from 'node:path';
import { err } from '../../errors.ts';
import { isAtOrBelow } from './mountinfo.ts';

const MAX_PATH = 4096;

/** The lexical rules, without the roots: absolute, normalized, no `..`. Throws InvalidArgument. */
export function checkAbsolute(p: unknown, what: string): string {
  if (typeof p !== 'string') throw err.invalid(`${what} must be a string, got ${p === null ? 'null' : typeof p}`);
  if (p.length === 0 || p.length > MAX_PATH) throw err.invalid(`${what} must be 1..${MAX_PATH} characters`);
  if (p.includes('\0')) throw err.invalid(`${what} must not contain NUL`);
  if (!p.startsWith('/')) throw err.invalid(`${what} must be an absolute path, got ${JSON.stringify(p)}`);
  if (p !== '/') {
    for (const seg of p.slice(1).split('/')) {
      if (seg === '..') throw err.invalid(`${what} must not contain "..": ${JSON.stringify(p)}`);
      if (seg === '' || seg === '.') throw err.invalid(`${what} must be normalized: ${JSON.stringify(p)}`);
    }
  }
  return p;
}

/** realpath of the deepest existing ancestor, plus the components that do not exist yet. */
export async function resolveExisting(p: string): Promise<string> {
  let head = p;
  let tail = '';
  for (;;) {
    try {
      const real = await realpath(head);
      return tail ? posix.join(real, tail) : real;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || head === '/') {
        throw err.invalid(`cannot resolve ${p}: ${(e as Error).message}`);
      }
      tail = tail ? posix.join(posix.basename(head), tail) : posix.basename(head);
      head = dirname(head);
    }
  }
}

const missing = (e: unknown) => ['ENOENT', 'ENOTDIR'].includes((e as NodeJS.ErrnoException).code ?? '');

/** A symlink met on the walk: the path it resolves to, which differs from the one expected (refused). */
const through = (at: string) => {
  try {
    return realpathSync.native(at);
  } catch {
    return `${at} (a dangling symlink)`;
  }
};

/**
 * `rest` below the real directory `real`, each component lstat'ed in turn: a symlink answers with the path it
 * resolves to (which the caller refuses), a missing component ends the walk (nothing below it exists). A
 * component that is not a directory is left to the op to fail on, as realpath's ENOTDIR is above. The
 * parents are lstat'ed synchronously (Corral's own directories); the path itself asynchronously, because it
 * may be a mount point, and an lstat there asks the mounted filesystem (a hung NFS or FUSE one would block
 * the worker's thread).
 */
async function walkBelow(real: string, rest: string): Promise<string> {
  const segs = rest.split('/');
  let at = real;
  for (let i = 0; i < segs.length - 1; i++) {
    at = `${at === '/' ? '' : at}/${segs[i]}`;
    let st: Stats | undefined;
    try {
      st = lstatSync(at, { throwIfNoEntry: false });
    } catch (e) {
      throw err.invalid(`cannot resolve ${at}: ${(e as Error).message}`);
    }
    if (!st || !st.isDirectory()) return st?.isSymbolicLink() ? through(at) : posix.join(real, rest);
  }
  at = `${at === '/' ? '' : at}/${segs.at(-1)}`;
  const stat = await lstat(at).catch((e: unknown) => {
    if (missing(e)) return undefined;
    throw err.invalid(`cannot resolve ${at}: ${(e as Error).message}`);
  });
  return stat?.isSymbolicLink() ? through(at) : at;
}

export class PathPolicy {
  readonly roots: readonly string[];
  /** Roots that resolved whole (they exist): their real path, kept (checked on every op otherwise). */
  private readonly realOf = new Map<string, string>();
  constructor(
    roots: readonly string[],
    readonly label = 'allowed roots',
    private readonly local = false,
  ) {
    if (roots.length === 0) throw err.invalid('the mount worker needs at least one root');
    this.roots = roots.map((r, i) => checkAbsolute(r, `root[${i}]`));
    if (this.roots.includes('/')) throw err.invalid('"/" cannot be a mount worker root');
  }

  /** The lexical checks; returns the root `p` lies under. */
  private rootOf(p: unknown, what: string): { path: string; root: string } {
    const path = checkAbsolute(p, what);
    const root = this.roots.find((r) => path !== r && isAtOrBelow(path, r));
    if (!root)
      throw err.invalid(`${what} ${JSON.stringify(path)} is not below the ${this.label} (${this.roots.join(', ')})`);
    return { path, root };
  }

  /**
   * Validate `p` and return its real path (the root resolved, nothing else), which is what
   * mountinfo shows and what the commands get.
   */
  async check(p: unknown, what: string): Promise<string> {
    const { path, root } = this.rootOf(p, what);
    const realRoot = this.realOf.get(root) ?? (await this.resolveRoot(root));
    const expected = posix.join(realRoot, path.slice(root.length));
    const real = this.local ? await walkBelow(realRoot, path.slice(root.length + 1)) : await resolveExisting(path);
    if (real !== expected)
      throw err.invalid(`${what} ${JSON.stringify(path)} goes through a symlink (resolves to ${real})`);
    return real;
  }

  private async resolveRoot(root: string): Promise<string> {
    try {
      const real = this.local ? realpathSync.native(root) : await realpath(root);
      this.realOf.set(root, real);
      return real;
    } catch {
      return resolveExisting(root); // not there yet: resolved again next time
    }
  }

  /** The real paths of the roots (for scanning mountinfo). */
  realRoots(): Promise<string[]> {
    return Promise.all(this.roots.map((r) => resolveExisting(r)));
  }
}
