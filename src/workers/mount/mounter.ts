/**
 * The mount worker's effects: every mount(2)/umount(2) Corral makes on the host, called in-process
 * (koffi, mount-sys.ts) or, where that cannot load, through mount(8) and umount(8) (mount-calls.ts).
 * Each op is idempotent, bounded by its deadline, and undoes what it did when it fails, so that nothing
 * is left mounted and no directory it created is left behind.
 *
 * Arguments arrive typed (see validate.ts); paths are checked here against the roots, because that
 * check is this class's security boundary whoever calls it.
 *
 * Directories an op creates under the roots (mkdir, chmod) are made synchronously, as the roots' check walks
 * the parents (paths.ts says why: µs on the local run directories, against ~40 µs of the worker's thread per
 * async call). What may be a mount point (an existing target) and a bind source, which may be on any
 * filesystem, are stat'ed asynchronously: a hung NFS or FUSE mount must not block the worker.
 */
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { CorralError, ensureError, err } from '../../errors.ts';
import type { MountOps, MountSpec } from '../../domain/ops.ts';
import {
  componentError,
  createdChain,
  describeStack,
  errnoOf,
  lstatOrUndefined,
  stackMatches,
  removeIfEmpty,
  removeTreeOneFs,
  withUndoErrors,
} from './mount-helpers.ts';
import { PathLocks } from './locks.ts';
import {
  bindFlags,
  bindIdentity,
  isAtOrBelow,
  isReadOnly,
  mountsAtOrBelow,
  readMountInfo,
  stackAt,
  type MountEntry,
} from './mountinfo.ts';
import { PathPolicy } from './paths.ts';
import type { MounterOptions, OpCtx } from './mounter-options.ts';
import { forkCalls, syscallCalls, type MountCalls } from './mount-calls.ts';
import { loadMountSys } from './mount-sys.ts';
import { undoOp, unmountBelow, type UndoOptions } from './unmount.ts';

export type { MounterOptions, OpCtx } from './mounter-options.ts';

type Res<K extends keyof MountOps> = MountOps[K]['res'];

/**
 * `unmountAll`'s result. Beyond the protocol's `unmounted`: `lazy` says the deadline came near with
 * the target still busy and `umount -l` detached it (the filesystem lives on until its last user
 * goes); `removedDir` says the directory was removed.
 */
export type UnmountAllResult = Res<'unmountAll'> & { lazy: boolean; removedDir: boolean };
export type ScanResult = Res<'scan'>;

const ROOTFS_DIR_MODE = 0o711;
const PARENT_DIR_MODE = 0o755;

export class Mounter {
  readonly policy: PathPolicy;
  private readonly sources: PathPolicy;
  private readonly locks = new PathLocks();
  private readonly lazyReserveMs: number;
  private readonly undoTimeoutMs: number;
  private readonly mountInfo: (under?: string) => Promise<MountEntry[]>;
  private readonly afterCreate: NonNullable<MounterOptions['afterCreate']>;
  /** How the kernel is called; `fallback` says why it is mount(8) when mount(2) was wanted. */
  readonly calls: MountCalls;
  readonly fallback?: string;

  private get undoOptions(): UndoOptions {
    const { undoTimeoutMs, lazyReserveMs, mountInfo, calls } = this;
    return { undoTimeoutMs, lazyReserveMs, mountInfo, calls };
  }

  constructor(o: MounterOptions) {
    this.policy = new PathPolicy(o.roots, 'allowed roots', true);
    this.sources = new PathPolicy([...o.roots, ...(o.bindSourceRoots ?? [])], 'allowed bind source roots');
    this.lazyReserveMs = o.lazyReserveMs ?? 1000;
    this.undoTimeoutMs = o.undoTimeoutMs ?? 10_000;
    this.mountInfo = o.mountInfo ?? ((under) => readMountInfo(undefined, under));
    const sys = o.calls === 'fork' ? undefined : loadMountSys();
    this.calls = sys && 'sys' in sys ? syscallCalls(sys.sys) : forkCalls;
    if (sys && 'error' in sys) this.fallback = sys.error;
    this.afterCreate =
      o.afterCreate ??
      (() => {
        // No fault injection: nothing to do between creating the target and mounting.
      });
  }

  /**
   * Kata §6.1 `doMount`, with its leak fixed: create `target` (0711, not recursive) if missing, mount
   * each entry in order; when entry k fails, unmount what this op mounted and remove the directory
   * if this op created it. A target that already holds exactly these mounts is success.
   */
  async mountRootfs(req: { target: string; mounts: readonly MountSpec[] }, ctx: OpCtx): Promise<Res<'mountRootfs'>> {
    const target = await this.policy.check(req.target, 'target');
    if (req.mounts.length === 0) throw err.invalid('mountRootfs: mounts must not be empty');
    const release = await this.locks.acquire([target], ctx.signal);
    try {
      // A path that does not exist is no mount point: mountinfo is read only for a target that exists.
      const info = (await lstatOrUndefined(target)) ? await this.mountInfo() : [];
      const stack = stackAt(info, target);
      if (stack.length > 0) {
        if (await stackMatches(info, stack, req.mounts)) return { mounted: req.mounts.length, createdDir: false };
        throw err.precondition(
          `${target} already holds ${stack.length} mount(s) (${describeStack(stack)}) ` +
            'that differ from the requested rootfs; unmount it first',
        );
      }

      let createdDir = false;
      try {
        mkdirSync(target, { mode: ROOTFS_DIR_MODE });
        chmodSync(target, ROOTFS_DIR_MODE); // the umask must not decide the mode
        createdDir = true;
      } catch (e) {
        if (errnoOf(e) === 'ENOENT')
          throw err.precondition(`cannot create rootfs directory ${target}: its parent does not exist`);
        if (errnoOf(e) !== 'EEXIST')
          throw err.internal(`cannot create rootfs directory ${target}: ${(e as Error).message}`, e);
        if (!(await stat(target)).isDirectory())
          throw err.precondition(`rootfs target ${target} exists and is not a directory`);
      }

      let current: MountSpec | undefined;
      try {
        await this.afterCreate('mountRootfs', target);
        for (const m of req.mounts) {
          current = m;
          ctx.signal.throwIfAborted();
          await this.calls.mountSpec(m, target, ctx.signal);
        }
      } catch (e) {
        const first = componentError(current, e);
        const undoErrors = await undoOp(target, createdDir ? [target] : [], this.undoOptions);
        throw withUndoErrors(first, undoErrors);
      }
      return { mounted: req.mounts.length, createdDir };
    } finally {
      release();
    }
  }

  /**
   * `mount --bind source target` (target created with parents; a file when the source is a file), then
   * `remount,bind,ro` when `readonly`.
   */
  async bind(req: { source: string; target: string; readonly?: boolean }, ctx: OpCtx): Promise<Res<'bind'>> {
    const target = await this.policy.check(req.target, 'target');
    const source = await this.sources.check(req.source, 'source');
    const readonly = req.readonly === true;
    const release = await this.locks.acquire([target, source], ctx.signal);
    try {
      const srcStat = await stat(source).catch((e: unknown) => {
        if (errnoOf(e) === 'ENOENT') throw err.notFound(`bind source ${source} does not exist`);
        throw err.internal(`cannot stat bind source ${source}: ${(e as Error).message}`, e);
      });
      const existing = await lstatOrUndefined(target);
      // mountinfo only when the target may be a mount point already (it exists) or for the flags a
      // read-only remount keeps: a fresh bind needs none.
      const info = existing || readonly ? await this.mountInfo() : [];
      const top = stackAt(info, target).at(-1);
      if (top) {
        const id = bindIdentity(info, source);
        if (!id || id.dev !== top.dev || id.root !== top.root) {
          throw err.precondition(
            `${target} already holds a different mount (${describeStack([top])}); unmount it first`,
          );
        }
        if (isReadOnly(top) !== readonly) await this.calls.remountBind(target, readonly, top.mountOptions, ctx.signal);
        return { createdDir: false };
      }

      const created: string[] = [];
      if (existing) {
        if (existing.isDirectory() !== srcStat.isDirectory()) {
          throw err.precondition(
            `bind target ${target} exists but is ${existing.isDirectory() ? 'a directory' : 'not a directory'} ` +
              `while the source is ${srcStat.isDirectory() ? 'one' : 'not'}`,
          );
        }
      }
      try {
        if (!existing) {
          const dir = srcStat.isDirectory() ? target : dirname(target);
          const first = mkdirSync(dir, { recursive: true, mode: PARENT_DIR_MODE });
          if (first) created.push(...createdChain(first, dir));
          if (!srcStat.isDirectory()) {
            writeFileSync(target, '', { flag: 'wx', mode: 0o644 });
            created.push(target);
          }
        }
        await this.afterCreate('bind', target);
        ctx.signal.throwIfAborted();
        await this.calls.bind(source, target, ctx.signal);
        // A new bind has the per-mount flags of the mount its source lies on: a remount keeps them.
        if (readonly) await this.calls.remountBind(target, true, bindFlags(info, source), ctx.signal);
      } catch (e) {
        throw withUndoErrors(ensureError(e), await undoOp(target, created.reverse(), this.undoOptions));
      }
      return { createdDir: created.length > 0 };
    } finally {
      release();
    }
  }

  /**
   * Unmount everything at or below `target`, the most recent mount first, until nothing is left.
   * A busy mount is retried with back-off; only when the deadline is near does it fall back to
   * `umount -l`, and the result says so. Then, when `removeDir`, remove `target` if it is an empty
   * directory (or an empty file: the placeholder `bind` creates for a file source).
   */
  async unmountAll(req: { target: string; removeDir?: boolean }, ctx: OpCtx): Promise<UnmountAllResult> {
    const target = await this.policy.check(req.target, 'target');
    const release = await this.locks.acquire([target], ctx.signal);
    try {
      const { unmounted, lazy } = await unmountBelow(target, {
        deadlineMs: ctx.deadlineMs,
        onlyAt: false,
        lazyReserveMs: this.lazyReserveMs,
        mountInfo: this.mountInfo,
        calls: this.calls,
      });
      const removedDir = req.removeDir === true && (await removeIfEmpty(target));
      return { unmounted, lazy, removedDir };
    } finally {
      release();
    }
  }

  /**
   * Create a directory with parents (0755) and exactly `mode` (umask ignored). An existing directory is
   * left as it is.
   */
  async mkdir(req: { path: string; mode: number }, ctx: OpCtx): Promise<Res<'mkdir'>> {
    const path = await this.policy.check(req.path, 'path');
    const release = await this.locks.acquire([path], ctx.signal);
    try {
      const existing = await lstatOrUndefined(path);
      if (existing) {
        if (!existing.isDirectory()) throw err.precondition(`${path} exists and is not a directory`);
        return { created: false };
      }
      mkdirSync(dirname(path), { recursive: true, mode: PARENT_DIR_MODE });
      try {
        mkdirSync(path, { mode: req.mode });
      } catch (e) {
        if (errnoOf(e) === 'EEXIST') return { created: false };
        throw err.internal(`cannot create ${path}: ${(e as Error).message}`, e);
      }
      chmodSync(path, req.mode);
      return { created: true };
    } finally {
      release();
    }
  }

  /** `rm -rf` a tree, refusing (FailedPrecondition) while anything is mounted at or below it. Missing is success. */
  async removeTree(req: { path: string }, ctx: OpCtx): Promise<Res<'removeTree'>> {
    const path = await this.policy.check(req.path, 'path');
    const release = await this.locks.acquire([path], ctx.signal);
    try {
      if (!(await lstatOrUndefined(path))) return { removed: false };
      const mounted = mountsAtOrBelow(await this.mountInfo(path), path);
      if (mounted.length > 0) {
        const list = [...new Set(mounted.map((m) => m.mountPoint))];
        throw err.precondition(
          `refusing to remove ${path}: ${list.length} mount point(s) at or below it ` +
            `(${list.slice(0, 5).join(', ')}${list.length > 5 ? ', ...' : ''}); unmount first`,
        );
      }
      // One file system: should a mount appear below anyway, the removal fails instead of emptying it.
      await removeTreeOneFs(path, ctx.signal).catch((e: unknown) => {
        if (e instanceof CorralError) throw e;
        throw err.internal(`cannot remove ${path}: ${(e as Error).message}`, e);
      });
      return { removed: true };
    } finally {
      release();
    }
  }

  /** Every mount at or below the roots, one row per layer of a stack, in mount order. */
  async scan(): Promise<ScanResult> {
    const roots = await this.policy.realRoots();
    const info = await this.mountInfo();
    return {
      mounts: info
        .filter((e) => roots.some((r) => isAtOrBelow(e.mountPoint, r)))
        .map((e) => ({ target: e.mountPoint, fstype: e.fstype, source: e.source })),
    };
  }
}
