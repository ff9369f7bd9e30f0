/**
 * The mount worker's calls into the kernel, two ways with one behaviour: mount(2)/umount2(2) in-process
 * through koffi (mount-sys.ts; the default), or a fork of mount(8)/umount(8) per call (the fallback when
 * koffi cannot load, and what a test asks for to compare). Both do what util-linux does for the same
 * request: `--bind` is MS_BIND; a read-only bind is MS_BIND, then MS_REMOUNT|MS_BIND|MS_RDONLY keeping the
 * mount's nosuid/nodev/noexec and atime flags (libmount reads them from mountinfo; measured with strace on
 * 2.38.1); propagation flags are a call of their own. A request mount(2) alone cannot do the way mount(8)
 * would (a loop device, a `mount.<type>` helper, a filesystem the kernel does not list, userspace-only
 * options) goes to mount(8) on either way.
 */
import { existsSync, readFileSync } from 'node:fs';
import { CorralError, err } from '../../errors.ts';
import type { MountSpec } from '../../domain/ops.ts';
import { describeCommand, failureMessage, run } from '../exec.ts';
import { isBindSpec, mountCmd, mountOne } from './mount-helpers.ts';
import { MNT, MS, SysError, type MountSys } from './mount-sys.ts';

export type UmountOutcome = 'ok' | 'notMounted' | 'busy';

export interface MountCalls {
  readonly via: 'mount(2)' | 'mount(8)';
  /** `mount --bind source target`. */
  bind(source: string, target: string, signal: AbortSignal): Promise<void>;
  /** `mount -o remount,bind,ro|rw target`; `current`: the mount's per-mount options (mountinfo field 6). */
  remountBind(target: string, readonly: boolean, current: readonly string[], signal: AbortSignal): Promise<void>;
  /** One rootfs component: `mount -t TYPE -o OPTS SOURCE TARGET`. */
  mountSpec(m: MountSpec, target: string, signal: AbortSignal): Promise<void>;
  /** Unmount the top mount at `target` (`lazy`: detach it). Past `timeoutMs`: Timeout. */
  umount(target: string, o: { lazy: boolean; timeoutMs: number }): Promise<UmountOutcome>;
}

/** mount(8)/umount(8), one fork per call. */
export const forkCalls: MountCalls = {
  via: 'mount(8)',
  bind: (source, target, signal) => mountCmd(['--bind', source, target], signal),
  remountBind: (target, readonly, _current, signal) =>
    mountCmd(['-o', `remount,bind,${readonly ? 'ro' : 'rw'}`, target], signal),
  mountSpec: (m, target, signal) => mountOne(m, target, signal),
  async umount(target, o) {
    const args = o.lazy ? ['-l', target] : [target];
    const r = await run('umount', args, { timeoutMs: o.timeoutMs, okCodes: 'any' });
    if (r.code === 0) return 'ok';
    if (/not mounted|no mount point specified/i.test(r.stderr)) return 'notMounted';
    if (!o.lazy && /busy/i.test(r.stderr)) return 'busy';
    throw err.internal(failureMessage(describeCommand('umount', args), r), r);
  },
};

/** Per-mount flags as mountinfo shows them, and as mount(8) passes them back on a remount. */
const KEPT: Record<string, number> = {
  nosuid: MS.NOSUID,
  nodev: MS.NODEV,
  noexec: MS.NOEXEC,
  noatime: MS.NOATIME,
  nodiratime: MS.NODIRATIME,
  relatime: MS.RELATIME,
  nosymfollow: MS.NOSYMFOLLOW,
};

/**
 * mount(8)'s option words that are mount(2) flags: [set, clear]. Not kata/mount-options.ts's table: that one
 * reads OCI options as runc does (`bind` is MS_BIND there; here a bind is asked for apart, by --bind).
 */
const FLAGS: Record<string, [number, number]> = {
  ro: [MS.RDONLY, 0],
  rw: [0, MS.RDONLY],
  nosuid: [MS.NOSUID, 0],
  suid: [0, MS.NOSUID],
  nodev: [MS.NODEV, 0],
  dev: [0, MS.NODEV],
  noexec: [MS.NOEXEC, 0],
  exec: [0, MS.NOEXEC],
  sync: [MS.SYNCHRONOUS, 0],
  async: [0, MS.SYNCHRONOUS],
  dirsync: [MS.DIRSYNC, 0],
  mand: [MS.MANDLOCK, 0],
  nomand: [0, MS.MANDLOCK],
  noatime: [MS.NOATIME, 0],
  atime: [0, MS.NOATIME],
  nodiratime: [MS.NODIRATIME, 0],
  diratime: [0, MS.NODIRATIME],
  relatime: [MS.RELATIME, 0],
  norelatime: [0, MS.RELATIME],
  strictatime: [MS.STRICTATIME, 0],
  nostrictatime: [0, MS.STRICTATIME],
  lazytime: [MS.LAZYTIME, 0],
  nolazytime: [0, MS.LAZYTIME],
  nosymfollow: [MS.NOSYMFOLLOW, 0],
  silent: [MS.SILENT, 0],
  loud: [0, MS.SILENT],
  defaults: [0, 0],
  bind: [0, 0],
  rbind: [0, 0],
};
const PROPAGATION: Record<string, number> = {
  private: MS.PRIVATE,
  shared: MS.SHARED,
  slave: MS.SLAVE,
  unbindable: MS.UNBINDABLE,
};
const propagationOf = (o: string): number | undefined =>
  PROPAGATION[o] ?? (o.startsWith('r') && PROPAGATION[o.slice(1)] ? PROPAGATION[o.slice(1)]! | MS.REC : undefined);

/** Words mount(8) acts on itself (a loop device, a remount or move of an existing mount). */
const USERSPACE = new Set(['loop', 'remount', 'move', 'rmove']);

/** errnos that mean the request is wrong (mount(8) words them "does not exist", "wrong fs type"...). */
const CALLER_ERRNO = new Set(['ENOENT', 'ENODEV', 'EINVAL', 'ENOTDIR', 'ENOTBLK', 'ELOOP', 'ENAMETOOLONG']);

/** Filesystems the kernel knows (read once): a type not listed needs mount(8) (a module, a helper). */
let kernelFs: Set<string> | undefined;
const knowsFs = (t: string) =>
  (kernelFs ??= new Set(
    readFileSync('/proc/filesystems', 'utf8')
      .split('\n')
      .map((l) => l.split('\t').at(-1)!)
      .filter(Boolean),
  )).has(t);
const hasHelper = (t: string) => ['/sbin', '/usr/sbin'].some((d) => existsSync(`${d}/mount.${t}`));

/** A mount(2) call, bounded like a forked mount(8): aborted, it is waited for up to 5 s, then abandoned. */
async function bounded(p: Promise<void>, signal: AbortSignal, what: string): Promise<void> {
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<'aborted'>((r) => {
    onAbort = () => setTimeout(() => r('aborted'), 5000).unref();
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    const r = await Promise.race([p.then(() => 'done' as const), aborted]);
    // Like a mount(8) killed at the deadline: the op fails (and undoes) even if the call completed.
    if (r === 'aborted' || signal.aborted) throw abortReason(signal, what);
  } catch (e) {
    if (e instanceof SysError) throw classify(e, what);
    throw e;
  } finally {
    signal.removeEventListener('abort', onAbort!);
  }
}

const abortReason = (signal: AbortSignal, what: string) =>
  signal.reason instanceof CorralError ? signal.reason : err.cancelled(`${what} was cancelled`);

function classify(e: SysError, what: string): CorralError {
  const msg = `${what}: ${e.text} (${e.code})`;
  return CALLER_ERRNO.has(e.code) ? err.invalid(msg, e) : err.internal(msg, e);
}

/** mount(2)/umount2(2) in-process. */
export function syscallCalls(sys: MountSys): MountCalls {
  const remount = (target: string, flags: number, signal: AbortSignal) =>
    bounded(sys.mount(null, target, null, MS.REMOUNT | MS.BIND | flags, null), signal, `remount ${target}`);
  const self: MountCalls = {
    via: 'mount(2)',
    bind: (source, target, signal) =>
      bounded(sys.mount(source, target, null, MS.BIND, null), signal, `mount --bind ${source} ${target}`),
    remountBind(target, readonly, current, signal) {
      const kept = current.reduce((f, o) => f | (KEPT[o] ?? 0), 0);
      return remount(target, kept | (readonly ? MS.RDONLY : 0), signal);
    },
    async mountSpec(m, target, signal) {
      const words = m.options.flatMap((o) => o.split(',')).filter(Boolean);
      const bind = isBindSpec(m);
      const userspace = words.some((w) => USERSPACE.has(w) || w.startsWith('loop=') || w.startsWith('x-'));
      if (userspace || (!bind && (!knowsFs(m.type) || hasHelper(m.type))))
        return forkCalls.mountSpec(m, target, signal);
      let flags = 0;
      let props = 0;
      const data: string[] = [];
      for (const w of words) {
        const f = FLAGS[w];
        const p = propagationOf(w);
        if (f) flags = (flags | f[0]) & ~f[1];
        else if (p !== undefined) props |= p;
        else data.push(w);
      }
      const what = describeCommand('mount', [
        '-t',
        m.type,
        ...(words.length ? ['-o', words.join(',')] : []),
        m.source,
        target,
      ]);
      if (bind) {
        if (data.length > 0) return forkCalls.mountSpec(m, target, signal); // mount(8) decides what a bind's data means
        const rec = words.includes('rbind') ? MS.REC : 0;
        await bounded(sys.mount(m.source, target, null, MS.BIND | rec, null), signal, what);
        if (flags !== 0) await bounded(sys.mount(null, target, null, MS.REMOUNT | MS.BIND | flags, null), signal, what);
      } else {
        await bounded(sys.mount(m.source, target, m.type, flags, data.length ? data.join(',') : null), signal, what);
      }
      if (props !== 0) await bounded(sys.mount(null, target, null, props, null), signal, what);
    },
    async umount(target, o) {
      const what = `umount${o.lazy ? ' -l' : ''} ${target}`;
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(err.timeout(`${what} did not finish within ${o.timeoutMs} ms`)),
          Math.max(0, o.timeoutMs),
        );
      });
      try {
        await Promise.race([sys.umount2(target, MNT.NOFOLLOW | (o.lazy ? MNT.DETACH : 0)), late]);
        return 'ok';
      } catch (e) {
        if (!(e instanceof SysError)) throw e;
        if (e.code === 'EINVAL' || e.code === 'ENOENT') return 'notMounted';
        if (e.code === 'EBUSY' && !o.lazy) return 'busy';
        throw err.internal(`${what}: ${e.text} (${e.code})`, e);
      } finally {
        clearTimeout(timer);
      }
    },
  };
  return self;
}
