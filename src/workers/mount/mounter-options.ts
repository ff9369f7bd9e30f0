/** What a Mounter is built from, and what each of its ops gets from the harness. */
import type { MountEntry } from './mountinfo.ts';

export interface MounterOptions {
  /** Directories under which the worker may create, mount, unmount and remove. */
  roots: readonly string[];
  /** Where bind sources may live besides the roots (volumes, bundles). @default the roots only */
  bindSourceRoots?: readonly string[];
  /** Time kept back before the deadline for the lazy `umount -l` fallback. @default 1000 */
  lazyReserveMs?: number;
  /** Budget of each undo command once an op failed (possibly at its deadline). @default 10000 */
  undoTimeoutMs?: number;
  /**
   * Injected for tests. `under`: the caller needs only the mounts at or below it (more may come back).
   * @default the real /proc/self/mountinfo
   */
  mountInfo?: (under?: string) => Promise<MountEntry[]>;
  /** Fault injection for tests: runs after an op created its target, before it mounts; a throw fails the op there. */
  afterCreate?: (op: 'mountRootfs' | 'bind', target: string) => void | Promise<void>;
  /** `fork`: mount(8)/umount(8) even where mount(2) through koffi loads (tests). @default 'syscall' */
  calls?: 'syscall' | 'fork';
}

/** What every op gets from the harness. */
export interface OpCtx {
  signal: AbortSignal;
  deadlineMs: number;
}
