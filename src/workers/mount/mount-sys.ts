/**
 * mount(2) and umount2(2) called in-process, without a fork of mount(8) per mount.
 *
 * Why a library: Node has no binding for mount(2), and forking util-linux's mount(8) from the worker
 * cost about 10 ms of CPU per mount (a fork of a ~100 MB Node process, then exec) and stalled the
 * worker's one thread while the child was set up (issue 13, "Throughput"). koffi is an FFI for Node
 * with prebuilt binaries (no compiler on the host), so the worker calls libc's own `mount` and `umount2`.
 * The calls run on koffi's worker threads (`.async`), so a slow mount does not stall the event loop;
 * errno comes back with each call (koffi.errno(), read in the completion callback).
 *
 * Used by mount-ops.ts only. When koffi cannot load (an unsupported platform, a broken install),
 * `loadMountSys` says why and the worker forks mount(8)/umount(8) as before (it logs which, at start).
 */
import { createRequire } from 'node:module';

/** mount(2) flags (linux/mount.h): the one table, with the OCI option parser's (kata/mount-options.ts). */
export { MS } from '../../kata/mount-options.ts';

/** umount2(2) flags. */
export const MNT = { FORCE: 1, DETACH: 2, EXPIRE: 4, NOFOLLOW: 8 } as const;

/** A failed call: errno as its name (`EBUSY`) and number, and the C library's text for it. */
export class SysError extends Error {
  constructor(
    readonly call: string,
    readonly errno: number,
    readonly code: string,
    readonly text: string,
  ) {
    super(`${call}: ${text} (${code})`);
  }
}

export interface MountSys {
  /** mount(2); rejects with SysError. */
  mount(
    source: string | null,
    target: string,
    fstype: string | null,
    flags: number,
    data: string | null,
  ): Promise<void>;
  /** umount2(2); rejects with SysError. */
  umount2(target: string, flags: number): Promise<void>;
}

type AsyncFn = { async: (...args: unknown[]) => void };
interface Koffi {
  load(name: string): { func(decl: string): ((...args: unknown[]) => unknown) & AsyncFn };
  errno(): number;
  os: { errno: Record<string, number> };
}

/**
 * koffi queues at most 256 asynchronous calls and refuses more; a burst of ops on the worker must wait for
 * a slot rather than fail, so at most this many calls are handed to koffi at once.
 */
const MAX_IN_FLIGHT = 32;

class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];
  constructor(n: number) {
    this.free = n;
  }
  async run<T>(f: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((r) => this.waiting.push(r));
    try {
      return await f();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    }
  }
}

/** The binding, or why there is none. Loaded once per process. */
let loaded: { sys: MountSys } | { error: string } | undefined;

export function loadMountSys(): { sys: MountSys } | { error: string } {
  loaded ??= bind();
  return loaded;
}

function bind(): { sys: MountSys } | { error: string } {
  let k: Koffi;
  try {
    k = createRequire(import.meta.url)('koffi') as Koffi;
  } catch (e) {
    return { error: `koffi did not load: ${(e as Error).message.split('\n')[0]}` };
  }
  try {
    const libc = k.load('libc.so.6');
    const mount = libc.func(
      'int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)',
    );
    const umount2 = libc.func('int umount2(const char *target, int flags)');
    const strerror = libc.func('const char *strerror(int errnum)');
    const names = new Map(Object.entries(k.os.errno).map(([name, n]) => [n, name]));
    const slots = new Slots(MAX_IN_FLIGHT);
    const call = (what: string, fn: AsyncFn, args: unknown[]) => slots.run(() => once(what, fn, args));
    const once = (what: string, fn: AsyncFn, args: unknown[]) =>
      new Promise<void>((resolve, reject) => {
        fn.async(...args, (e: unknown, r: number) => {
          if (e) return reject(e instanceof Error ? e : new Error(`${what}: koffi call failed`));
          if (r === 0) return resolve();
          const n = k.errno();
          reject(new SysError(what, n, names.get(n) ?? `errno ${n}`, String(strerror(n))));
        });
      });
    return {
      sys: {
        mount: (source, target, fstype, flags, data) => call('mount', mount, [source, target, fstype, flags, data]),
        umount2: (target, flags) => call('umount2', umount2, [target, flags]),
      },
    };
  } catch (e) {
    return { error: `libc's mount(2) could not be bound through koffi: ${(e as Error).message}` };
  }
}
