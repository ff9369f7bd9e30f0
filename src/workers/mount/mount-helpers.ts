/**
 * The mount worker's small pieces: running mount(8) with its failure classified, and the file and
 * error helpers the Mounter's ops share.
 */
import { lstat, readdir, realpath, rmdir, unlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { CorralError, ensureError, err } from '../../errors.ts';
import type { MountSpec } from '../../domain/ops.ts';
import { describeCommand, failureMessage, oneLine, run } from '../exec.ts';
import { bindIdentity, isAtOrBelow, type MountEntry } from './mountinfo.ts';

export const errnoOf = (e: unknown) => (e as NodeJS.ErrnoException | undefined)?.code;

export async function lstatOrUndefined(p: string) {
  try {
    return await lstat(p);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return undefined;
    throw e;
  }
}

export const isBindSpec = (m: MountSpec) =>
  m.type === 'bind' || m.options.includes('bind') || m.options.includes('rbind');

/** mount(8)'s complaints about the request itself (rather than the host) are the caller's fault. */
const CALLER_FAULT =
  /unknown filesystem type|does not exist|wrong fs type|bad option|bad superblock|no such file|not a directory|can't find|invalid argument|bad usage|missing codepage|not a block device/i;

/** `mount -t TYPE [-o OPTS] SOURCE TARGET`. */
export async function mountOne(m: MountSpec, target: string, signal: AbortSignal): Promise<void> {
  const args = ['-t', m.type];
  if (m.options.length > 0) args.push('-o', m.options.join(','));
  args.push(m.source, target);
  await mountCmd(args, signal);
}

/** mount(8) with the failure classified: the request's fault is InvalidArgument, the host's Internal. */
export async function mountCmd(args: string[], signal: AbortSignal): Promise<void> {
  const r = await run('mount', args, { signal, okCodes: 'any' });
  if (r.code === 0) return;
  const what = describeCommand('mount', args);
  const msg = oneLine(r.stderr) || failureMessage(what, r);
  throw CALLER_FAULT.test(r.stderr)
    ? err.invalid(msg, r)
    : err.internal(`${msg} (mount exited with code ${r.code})`, r);
}

/** rmdir an empty directory, unlink an empty regular file; anything else (or nothing) stays. */
export async function removeIfEmpty(p: string): Promise<boolean> {
  try {
    const s = await lstatOrUndefined(p);
    if (s?.isDirectory()) {
      await rmdir(p);
      return true;
    }
    if (s?.isFile() && s.size === 0) {
      await unlink(p);
      return true;
    }
    return false;
  } catch (e) {
    const code = errnoOf(e);
    if (code === 'ENOENT' || code === 'ENOTEMPTY' || code === 'EEXIST') return false;
    throw err.internal(`unmounted ${p} but cannot remove it: ${(e as Error).message}`, e);
  }
}

/**
 * `rm -rf --one-file-system path` without the fork: a directory on another device than `path` itself (a
 * mount that appeared below after the caller checked) is not entered, and the removal fails naming it, as
 * rm fails. Missing entries (removed meanwhile) are fine. Checks `signal` at every directory.
 */
export async function removeTreeOneFs(path: string, signal: AbortSignal, dev?: number): Promise<void> {
  signal.throwIfAborted();
  const s = await lstatOrUndefined(path);
  if (!s) return;
  if (!s.isDirectory()) return ignoreMissing(unlink(path));
  if (dev !== undefined && s.dev !== dev)
    throw err.internal(`cannot remove ${path}: it is on another filesystem (skipped, as rm --one-file-system does)`);
  const names = await readdir(path).catch((e: unknown) => {
    if (errnoOf(e) === 'ENOENT') return [];
    throw e;
  });
  for (const n of names) await removeTreeOneFs(join(path, n), signal, s.dev);
  await ignoreMissing(rmdir(path));
}

const ignoreMissing = (p: Promise<void>) =>
  p.catch((e: unknown) => {
    if (errnoOf(e) !== 'ENOENT') throw e;
  });

/** The directories `mkdir -p` created, from `first` (the shallowest) down to `leaf`, in creation order. */
export function createdChain(first: string, leaf: string): string[] {
  const out: string[] = [];
  for (let p = leaf; isAtOrBelow(p, first); p = posix.dirname(p)) {
    out.push(p);
    if (p === first) break;
  }
  return out.reverse();
}

export function describeStack(stack: readonly MountEntry[]): string {
  return stack.map((e) => `${e.fstype} ${e.source}`).join(', ');
}

/** Kata's message for a failed component: "failed to mount rootfs component <type> <source>: <err>". */
export function componentError(m: MountSpec | undefined, e: unknown): CorralError {
  const c = ensureError(e);
  if (!m) return c;
  return new CorralError(c.code, `failed to mount rootfs component ${m.type} ${m.source}: ${c.message}`, {
    cause: e,
    retryable: c.retryable,
  });
}

/** The original error stays what the caller sees; a failed undo is appended, never dropped. */
export function withUndoErrors(e: CorralError, problems: readonly string[]): CorralError {
  if (problems.length === 0) return e;
  return new CorralError(e.code, `${e.message}; undo failed: ${problems.join('; ')}`, {
    cause: e,
    retryable: e.retryable,
  });
}

/** Does the stack on a target hold exactly the requested mounts (for a repeated op without its journal)? */
export async function stackMatches(
  info: readonly MountEntry[],
  stack: readonly MountEntry[],
  mounts: readonly MountSpec[],
): Promise<boolean> {
  if (stack.length !== mounts.length) return false;
  for (let i = 0; i < mounts.length; i++) {
    const m = mounts[i]!;
    const e = stack[i]!;
    if (isBindSpec(m)) {
      const real = await realpath(m.source).catch(() => undefined);
      const id = real ? bindIdentity(info, real) : undefined;
      if (!id || id.dev !== e.dev || id.root !== e.root) return false;
    } else {
      if (e.fstype !== m.type) return false;
      // A loop mount shows /dev/loopN, not the image file.
      if (!m.options.includes('loop') && e.source !== m.source) return false;
    }
  }
  return true;
}
