/**
 * The unmount loop behind `unmountAll` and every undo: umount(8) the newest mount at (or below)
 * a target until none is left. Mount order is kept, so a stack pops from the top and submounts go
 * before their parent. A busy mount is retried with back-off; only once the deadline is near
 * (within `lazyReserveMs`) does it fall back to `umount -l`, and the result says so.
 */
import { rmdir, unlink } from 'node:fs/promises';
import { CorralError, ensureError, err } from '../../errors.ts';
import { describeCommand, failureMessage, run, type RunResult } from '../exec.ts';
import { lstatOrUndefined } from './mount-helpers.ts';
import { mountsAtOrBelow, stackAt, type MountEntry } from './mountinfo.ts';

export interface UnmountOptions {
  deadlineMs: number;
  /** Only the stack on `target` itself (an undo), not the mounts below it. */
  onlyAt: boolean;
  /** Time kept back before the deadline for the lazy fallback (at most half of what is left). */
  lazyReserveMs: number;
  mountInfo: () => Promise<MountEntry[]>;
}

const MAX_UNMOUNTS = 1000;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

export async function unmountBelow(target: string, o: UnmountOptions): Promise<{ unmounted: number; lazy: boolean }> {
  const { deadlineMs } = o;
  const reserve = Math.min(o.lazyReserveMs, Math.max(0, (deadlineMs - Date.now()) / 2));
  let unmounted = 0;
  let lazy = false;
  let backoffMs = 20;
  for (let i = 0; i < MAX_UNMOUNTS; i++) {
    const info = await o.mountInfo();
    const top = (o.onlyAt ? stackAt(info, target) : mountsAtOrBelow(info, target)).at(-1);
    if (!top) return { unmounted, lazy };
    const budget = deadlineMs - Date.now() - reserve;
    let r: RunResult;
    if (budget > 0 && !lazy) {
      try {
        r = await run('umount', [top.mountPoint], { timeoutMs: budget, okCodes: 'any' });
      } catch (e) {
        if (e instanceof CorralError && e.code === 'Timeout') {
          lazy = true;
          continue;
        }
        throw e;
      }
      if (r.code === 0) {
        unmounted++;
        backoffMs = 20;
        continue;
      }
      if (/not mounted|no mount point specified/i.test(r.stderr)) continue; // unmounted by someone else meanwhile
      if (/busy/i.test(r.stderr)) {
        await sleep(Math.min(backoffMs, deadlineMs - Date.now() - reserve));
        backoffMs = Math.min(backoffMs * 2, 500);
        continue;
      }
      throw err.internal(failureMessage(describeCommand('umount', [top.mountPoint]), r), r);
    }
    lazy = true;
    r = await run('umount', ['-l', top.mountPoint], { timeoutMs: Math.max(reserve, 1000), okCodes: 'any' });
    if (r.code === 0) {
      unmounted++;
      continue;
    }
    if (/not mounted/i.test(r.stderr)) continue;
    throw err.internal(failureMessage(describeCommand('umount', ['-l', top.mountPoint]), r), r);
  }
  throw err.internal(`${target} was still mounted after ${MAX_UNMOUNTS} unmounts`);
}

/** What an op's undo needs of the Mounter's options. */
export interface UndoOptions {
  undoTimeoutMs: number;
  lazyReserveMs: number;
  mountInfo: () => Promise<MountEntry[]>;
}

/** Undo of a failed op: pop the mounts on `target`, then remove the paths it created (deepest first). */
export async function undoOp(target: string, createdPaths: readonly string[], o: UndoOptions): Promise<string[]> {
  const problems: string[] = [];
  try {
    await unmountBelow(target, {
      deadlineMs: Date.now() + o.undoTimeoutMs,
      onlyAt: true,
      lazyReserveMs: o.lazyReserveMs,
      mountInfo: o.mountInfo,
    });
  } catch (e) {
    problems.push(ensureError(e).message);
    return problems; // never remove a directory something may still be mounted on
  }
  for (const p of createdPaths) {
    try {
      const s = await lstatOrUndefined(p);
      if (!s) continue;
      if (s.isDirectory()) await rmdir(p);
      else await unlink(p);
    } catch (e) {
      problems.push(`cannot remove ${p}: ${(e as Error).message}`);
    }
  }
  return problems;
}
