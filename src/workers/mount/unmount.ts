/**
 * The unmount loop behind `unmountAll` and every undo: unmount (umount2(2), or umount(8): mount-calls.ts)
 * the newest mount at (or below) a target until none is left. Mount order is kept, so a stack pops from
 * the top and submounts go before their parent. A busy mount is retried with back-off; only once the
 * deadline is near (within `lazyReserveMs`) does it fall back to a lazy unmount (MNT_DETACH, `umount -l`),
 * and the result says so.
 */
import { rmdir, unlink } from 'node:fs/promises';
import { CorralError, ensureError, err } from '../../errors.ts';
import { lstatOrUndefined } from './mount-helpers.ts';
import type { MountCalls, UmountOutcome } from './mount-calls.ts';
import { mountsAtOrBelow, stackAt, type MountEntry } from './mountinfo.ts';

export interface UnmountOptions {
  deadlineMs: number;
  /** Only the stack on `target` itself (an undo), not the mounts below it. */
  onlyAt: boolean;
  /** Time kept back before the deadline for the lazy fallback (at most half of what is left). */
  lazyReserveMs: number;
  mountInfo: (under?: string) => Promise<MountEntry[]>;
  /** mount(2) in-process or mount(8) forked (mount-calls.ts). */
  calls: MountCalls;
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
    const info = await o.mountInfo(target);
    const top = (o.onlyAt ? stackAt(info, target) : mountsAtOrBelow(info, target)).at(-1);
    if (!top) return { unmounted, lazy };
    const budget = deadlineMs - Date.now() - reserve;
    let r: UmountOutcome;
    if (budget > 0 && !lazy) {
      try {
        r = await o.calls.umount(top.mountPoint, { lazy: false, timeoutMs: budget });
      } catch (e) {
        if (e instanceof CorralError && e.code === 'Timeout') {
          lazy = true;
          continue;
        }
        throw e;
      }
      if (r === 'ok') {
        unmounted++;
        backoffMs = 20;
        continue;
      }
      if (r === 'notMounted') continue; // unmounted by someone else meanwhile
      await sleep(Math.min(backoffMs, deadlineMs - Date.now() - reserve)); // busy
      backoffMs = Math.min(backoffMs * 2, 500);
      continue;
    }
    lazy = true;
    r = await o.calls.umount(top.mountPoint, { lazy: true, timeoutMs: Math.max(reserve, 1000) });
    if (r === 'ok') unmounted++;
  }
  throw err.internal(`${target} was still mounted after ${MAX_UNMOUNTS} unmounts`);
}

/** What an op's undo needs of the Mounter's options. */
export interface UndoOptions {
  undoTimeoutMs: number;
  lazyReserveMs: number;
  mountInfo: (under?: string) => Promise<MountEntry[]>;
  calls: MountCalls;
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
      calls: o.calls,
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
