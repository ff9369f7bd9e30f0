/**
 * config.json `mounts` → what the host must do (bind host files and directories into the sandbox's
 * share, make emptyDir directories there) and what the guest mounts inside the container's root, the
 * way runc would give them (options translated by mount-options.ts). Pure: the host sources are
 * resolved beforehand by {@link resolveBindSources}.
 *
 * Kata shares host binds through the sandbox's shared directory; so does Corral: mount n with host
 * source S is bound onto `<sharedDir>/<cid>/mounts/<n>-<basename S>`, which the guest sees under
 * `/run/corral/shared/<cid>/mounts/...` and binds onto the destination (`ro` is read-only on both sides).
 */
import * as path from 'node:path';
import { err } from '../errors.ts';
import { type KataFs, nodeFsAsync, errnoOf, fsErrorText } from './fs.ts';
import { EPHEMERAL_TYPE, LOCAL_TYPE } from './empty-dir.ts';
import { MS, parseMountOptions } from './mount-options.ts';
import type { OciMount } from './oci-types.ts';
import { isWithin } from './util.ts';

/** One mount in the guest (the shape of domain/ops.ts `GuestMount`; kata does not import domain). */
export interface GuestMountSpec {
  source: string;
  target: string;
  fstype: string;
  flags: number;
  data: string;
  file?: boolean;
}

/** A host side effect for the mount worker, in mount order. */
export type HostMountStep =
  { kind: 'bind'; source: string; target: string; readonly: boolean } | { kind: 'mkdir'; path: string; mode: number };

export interface MountPlan {
  host: HostMountStep[];
  guest: GuestMountSpec[];
}

/** A bind's host source: the path the mount worker accepts (under a bundle root as configured) and its kind. */
export interface BindSource {
  path: string;
  file: boolean;
}

export interface MountContext {
  /** This container's directory in the sandbox's share on the host: `<sharedDir>/<cid>`. */
  hostDir: string;
  /** The same directory in the guest: `/run/corral/shared/<cid>`. */
  guestDir: string;
  /** The host source of each host bind, by its index in `mounts` ({@link resolveBindSources}). */
  sources: ReadonlyMap<number, BindSource>;
}

/** At most this many config.json mounts (the guest's RUN frame carries them all). */
export const MAX_MOUNTS = 256;
/** Kata's default /dev/shm size (64 MiB), used when /dev/shm is a bind of the sandbox's shm. */
export const DEFAULT_SHM = 'mode=1777,size=65536k';
/** The device nodes runc creates in a tmpfs /dev; the guest binds its own (file binds of the guest's /dev). */
export const DEFAULT_DEVICES = ['/dev/null', '/dev/zero', '/dev/full', '/dev/random', '/dev/urandom', '/dev/tty'];
const FS_TYPES = new Set(['proc', 'sysfs', 'devpts', 'mqueue', 'tmpfs']);
const CGROUP_TYPES = new Set(['cgroup', 'cgroup2']);
const LOCAL_DIR_MODE = 0o777;

const where = (m: OciMount, i: number) => `config.json mounts[${i}] (destination ${JSON.stringify(m.destination)})`;

/** The destination, normalized; relative, `..`, `/` and NUL are refused. */
function destinationOf(m: OciMount, i: number): string {
  const d = m.destination;
  if (!d.startsWith('/')) throw err.invalid(`${where(m, i)}: the destination must be an absolute path`);
  if (d.includes('\0')) throw err.invalid(`${where(m, i)}: the destination must not contain NUL`);
  if (d.split('/').includes('..')) throw err.invalid(`${where(m, i)}: the destination must not contain ".."`);
  const n = path.posix.normalize(d).replace(/\/+$/, '');
  if (n === '') throw err.invalid(`${where(m, i)}: "/" cannot be a mount destination (it is the rootfs)`);
  return n;
}

type Kind = 'hostBind' | 'deviceBind' | 'shm' | 'ephemeral' | 'local' | 'fs' | 'cgroup';

/** What a mount is, after Kata's emptyDir rewrite; throws for what the guest cannot mount. */
function kindOf(m: OciMount, i: number): Kind {
  const dest = destinationOf(m, i);
  const o = parseMountOptions(m.options);
  if (o.idmapped) throw err.invalid(`${where(m, i)}: id-mapped mounts (idmap) are not supported`);
  if (m.type === EPHEMERAL_TYPE) return 'ephemeral';
  if (m.type === LOCAL_TYPE) return 'local';
  // Kata (handleShm): /dev/shm is the sandbox's shm or a 64 MiB tmpfs, whatever config.json says.
  if (dest === '/dev/shm') return 'shm';
  if (o.bind || m.type === 'bind') return DEFAULT_DEVICES.includes(m.source) ? 'deviceBind' : 'hostBind';
  if (FS_TYPES.has(m.type)) return 'fs';
  if (CGROUP_TYPES.has(m.type)) return 'cgroup';
  throw err.invalid(
    `${where(m, i)}: type ${JSON.stringify(m.type)} cannot be mounted in the guest ` +
      `(supported: bind, ${[...FS_TYPES, ...CGROUP_TYPES].join(', ')})`,
  );
}

/** A short, unique, printable name for mount n in the share. */
function shareName(i: number, source: string): string {
  const base = path.posix
    .basename(source)
    .replace(/[^A-Za-z0-9._-]/g, '_')
    .slice(0, 32);
  return `${i}-${base === '' || base === '.' || base === '..' ? 'mount' : base}`;
}

/**
 * Which mounts need a host source (host binds, not emptyDirs, /dev/shm or the guest's own devices).
 * Validates every mount on the way (destinations, types), so a bad spec fails before any lookup.
 */
export function hostBindIndexes(mounts: readonly OciMount[]): number[] {
  if (mounts.length > MAX_MOUNTS) throw err.invalid(`config.json: at most ${MAX_MOUNTS} mounts, got ${mounts.length}`);
  return mounts.flatMap((m, i) => (kindOf(m, i) === 'hostBind' ? [i] : []));
}

/**
 * Resolve each host bind's source: it must exist (NotFound) and its real path must lie inside one of
 * `roots` (the bundle roots, whose contents the mount worker may bind). The path returned keeps the
 * root as configured (the mount worker checks the path below a root for symlinks).
 */
export async function resolveBindSources(
  mounts: readonly OciMount[],
  roots: readonly string[],
  fs: KataFs = nodeFsAsync, // a volume's source may be on NFS or FUSE: never a blocking call on it
): Promise<Map<number, BindSource>> {
  const out = new Map<number, BindSource>();
  const idx = hostBindIndexes(mounts);
  if (idx.length === 0) return out;
  const realRoots = await Promise.all(
    roots.map(async (r) => ({ r, real: path.isAbsolute(r) ? await fs.realpath(r).catch(() => undefined) : undefined })),
  );
  for (const i of idx) {
    const m = mounts[i]!;
    if (!path.isAbsolute(m.source))
      throw err.invalid(`${where(m, i)}: a bind source must be an absolute path, got ${JSON.stringify(m.source)}`);
    let real: string;
    try {
      real = await fs.realpath(m.source);
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') throw err.notFound(`${where(m, i)}: bind source ${m.source} does not exist`, e);
      throw err.invalid(`${where(m, i)}: ${fsErrorText('stat', m.source, e)}`, e);
    }
    const root = realRoots.find((x) => x.real !== undefined && isWithin(x.real, real));
    if (!root)
      throw err.invalid(
        `${where(m, i)}: bind source ${m.source} is outside the allowed bundle roots (${roots.join(', ')})`,
      );
    out.set(i, { path: path.join(root.r, path.relative(root.real!, real)), file: !(await fs.isDirectory(real)) });
  }
  return out;
}

/** The guest mounts and host steps for `mounts` (already through Kata's emptyDir rewrite for pod containers). */
export function planMounts(mounts: readonly OciMount[], ctx: MountContext): MountPlan {
  hostBindIndexes(mounts); // validate all first
  const host: HostMountStep[] = [];
  const guest: GuestMountSpec[] = [];
  let devIsTmpfs = false;
  mounts.forEach((m, i) => {
    const target = destinationOf(m, i);
    const o = parseMountOptions(m.options);
    // A bind is mounted, then remounted with its flags by the guest: MS_REMOUNT has no place in the first call.
    const bindFlags = (o.flags & ~MS.REMOUNT) | MS.BIND;
    switch (kindOf(m, i)) {
      case 'hostBind': {
        const src = ctx.sources.get(i);
        if (!src) throw err.internal(`BUG: ${where(m, i)}: its bind source was not resolved`);
        const name = shareName(i, src.path);
        const readonly = (o.flags & MS.RDONLY) !== 0;
        host.push({ kind: 'bind', source: src.path, target: `${ctx.hostDir}/mounts/${name}`, readonly });
        guest.push({
          source: `${ctx.guestDir}/mounts/${name}`,
          target,
          fstype: 'bind',
          flags: bindFlags,
          data: o.data,
          ...(src.file ? { file: true } : {}),
        });
        return;
      }
      case 'deviceBind':
        guest.push({ source: m.source, target, fstype: 'bind', flags: bindFlags, data: o.data, file: true });
        return;
      case 'local': {
        // Kata creates a `local` emptyDir inside the guest; Corral makes it in the share (per container).
        const name = shareName(i, m.source);
        host.push({ kind: 'mkdir', path: `${ctx.hostDir}/mounts/${name}`, mode: LOCAL_DIR_MODE });
        guest.push({ source: `${ctx.guestDir}/mounts/${name}`, target, fstype: 'bind', flags: bindFlags, data: '' });
        return;
      }
      case 'ephemeral':
        guest.push({ source: 'tmpfs', target, fstype: 'tmpfs', flags: o.flags & ~(MS.BIND | MS.REC), data: o.data });
        return;
      case 'shm': {
        const own = m.type === 'tmpfs' && !o.bind;
        guest.push({
          source: 'shm',
          target,
          fstype: 'tmpfs',
          flags: own ? o.flags : MS.NOSUID | MS.NODEV | MS.NOEXEC,
          data: own ? o.data : DEFAULT_SHM,
        });
        return;
      }
      case 'cgroup':
        // The guest is cgroup v2 only; the container sees it read-only (no cgroup namespace yet).
        guest.push({ source: 'cgroup2', target, fstype: 'cgroup2', flags: o.flags | MS.RDONLY, data: '' });
        return;
      case 'fs':
        guest.push({ source: m.source || m.type, target, fstype: m.type, flags: o.flags, data: o.data });
        if (target === '/dev' && m.type === 'tmpfs') {
          // runc creates the default device nodes in a tmpfs /dev; the guest binds its own.
          devIsTmpfs = true;
          for (const d of DEFAULT_DEVICES)
            guest.push({ source: d, target: d, fstype: 'bind', flags: MS.BIND, data: '', file: true });
        } else if (target === '/dev/pts' && m.type === 'devpts' && devIsTmpfs) {
          // runc's /dev/ptmx symlink to pts/ptmx, as a bind of this container's own devpts instance.
          guest.push({
            source: `${ctx.guestDir}/rootfs/dev/pts/ptmx`,
            target: '/dev/ptmx',
            fstype: 'bind',
            flags: MS.BIND,
            data: '',
            file: true,
          });
        }
        return;
    }
  });
  return { host, guest };
}
