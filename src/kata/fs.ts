/**
 * The file-system questions the Kata rules ask, behind an interface so rule tests need no disk.
 * {@link nodeFs} is the real implementation; tests inject an in-memory one.
 */
import { promises as fsp, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { err } from '../errors.ts';

/**
 * Every method follows symlinks. Methods that answer a yes/no question never reject; the others
 * reject with a Node-style error carrying `code` (`ENOENT`, `EACCES`, ...).
 */
export interface KataFs {
  exists(p: string): Promise<boolean>;
  isFile(p: string): Promise<boolean>;
  isDirectory(p: string): Promise<boolean>;
  /** Size in bytes. */
  size(p: string): Promise<number>;
  /** Absolute path with every symlink resolved; rejects if any component is missing. */
  realpath(p: string): Promise<string>;
  /** UTF-8 contents. */
  readFile(p: string): Promise<string>;
  /** Entry names, in no particular order. */
  readdir(p: string): Promise<string[]>;
}

/** stat(2), synchronously; `undefined` for a path that cannot be stat'ed (the predicates below answer "no"). */
export const statOrUndefined = (p: string) => {
  try {
    return statSync(p, { throwIfNoEntry: false });
  } catch {
    return undefined; // EACCES, ENOTDIR, ELOOP...
  }
};

/**
 * The real file system (node:fs), called synchronously behind the async interface: what the rules read is
 * small and local (a bundle's config.json, its directory, the runtime's assets), where a call takes a few µs
 * and its async form some 40 µs of the agent's thread, a file read four of them (open, fstat, read, close:
 * issue 13's profile of a burst of creates). Errors still arrive as rejections. Not for paths that may lie on
 * another filesystem (a volume's source: {@link nodeFsAsync}), where a hung NFS or FUSE mount would block
 * the agent.
 */
export const nodeFs: KataFs = {
  exists: async (p) => statOrUndefined(p) !== undefined,
  isFile: async (p) => statOrUndefined(p)?.isFile() ?? false,
  isDirectory: async (p) => statOrUndefined(p)?.isDirectory() ?? false,
  size: async (p) => statSync(p).size,
  realpath: async (p) => realpathSync.native(p),
  readFile: async (p) => readFileSync(p, 'utf8'),
  readdir: async (p) => readdirSync(p),
};

const statAsync = (p: string) => fsp.stat(p).catch(() => undefined);

/** The real file system through node:fs/promises: for paths that may be on any filesystem (volume sources). */
export const nodeFsAsync: KataFs = {
  exists: async (p) => (await statAsync(p)) !== undefined,
  isFile: async (p) => (await statAsync(p))?.isFile() ?? false,
  isDirectory: async (p) => (await statAsync(p))?.isDirectory() ?? false,
  size: async (p) => (await fsp.stat(p)).size,
  realpath: (p) => fsp.realpath(p),
  readFile: (p) => fsp.readFile(p, 'utf8'),
  readdir: (p) => fsp.readdir(p),
};

const STRERROR: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOTDIR: 'not a directory',
  EISDIR: 'is a directory',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'file name too long',
};

/** The errno code of a rejected fs call, if any. */
export const errnoOf = (e: unknown): string | undefined =>
  typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'string'
    ? (e as { code: string }).code
    : undefined;

/** A Go-style `<op> <path>: <strerror>` text for a failed fs call. */
export function fsErrorText(op: string, p: string, e: unknown): string {
  const code = errnoOf(e);
  const text = (code && STRERROR[code]) ?? (e instanceof Error ? e.message : String(e));
  return `${op} ${p}: ${text}`;
}

/**
 * Kata's `ResolvePath`: the absolute path with symlinks followed.
 * Missing → NotFound `file <abs> does not exist`. Corral rejects relative paths (Kata resolves them
 * against the shim's working directory, which is the bundle).
 */
export async function resolvePath(fs: KataFs, p: string): Promise<string> {
  if (p === '') throw err.invalid('path must be specified');
  if (!path.isAbsolute(p)) throw err.invalid(`path ${p} must be absolute`);
  const abs = path.resolve(p);
  try {
    return await fs.realpath(abs);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') throw err.notFound(`file ${abs} does not exist`, e);
    throw err.invalid(fsErrorText('lstat', abs, e), e);
  }
}
