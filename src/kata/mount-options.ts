/**
 * OCI mount options → mount(2) flags and data, as runc's `parseMountOptions` (libcontainer/specconv)
 * reads them: a known flag name sets or clears its MS_* bit, a propagation name is collected apart (it
 * cannot be combined with a mount: mount(2) would change the propagation type instead of mounting),
 * and everything else is filesystem data, comma-joined in order (`size=65536k,mode=755`).
 */

/** mount(2) flags (linux/mount.h). */
export const MS = {
  RDONLY: 0x1,
  NOSUID: 0x2,
  NODEV: 0x4,
  NOEXEC: 0x8,
  SYNCHRONOUS: 0x10,
  REMOUNT: 0x20,
  MANDLOCK: 0x40,
  DIRSYNC: 0x80,
  NOSYMFOLLOW: 0x100,
  NOATIME: 0x400,
  NODIRATIME: 0x800,
  BIND: 0x1000,
  REC: 0x4000,
  SILENT: 0x8000,
  POSIXACL: 0x10000,
  UNBINDABLE: 0x20000,
  PRIVATE: 0x40000,
  SLAVE: 0x80000,
  SHARED: 0x100000,
  RELATIME: 0x200000,
  STRICTATIME: 0x1000000,
  LAZYTIME: 0x2000000,
  I_VERSION: 0x800000,
} as const;

/** Name → [clear the bit instead of setting it, bit]; runc's table. */
const FLAGS: Readonly<Record<string, readonly [boolean, number]>> = {
  acl: [false, MS.POSIXACL],
  async: [true, MS.SYNCHRONOUS],
  atime: [true, MS.NOATIME],
  bind: [false, MS.BIND],
  defaults: [false, 0],
  dev: [true, MS.NODEV],
  diratime: [true, MS.NODIRATIME],
  dirsync: [false, MS.DIRSYNC],
  exec: [true, MS.NOEXEC],
  iversion: [false, MS.I_VERSION],
  lazytime: [false, MS.LAZYTIME],
  loud: [true, MS.SILENT],
  mand: [false, MS.MANDLOCK],
  noacl: [true, MS.POSIXACL],
  noatime: [false, MS.NOATIME],
  nodev: [false, MS.NODEV],
  nodiratime: [false, MS.NODIRATIME],
  noexec: [false, MS.NOEXEC],
  noiversion: [true, MS.I_VERSION],
  nolazytime: [true, MS.LAZYTIME],
  nomand: [true, MS.MANDLOCK],
  norelatime: [true, MS.RELATIME],
  nostrictatime: [true, MS.STRICTATIME],
  nosuid: [false, MS.NOSUID],
  nosymfollow: [false, MS.NOSYMFOLLOW],
  rbind: [false, MS.BIND | MS.REC],
  relatime: [false, MS.RELATIME],
  remount: [false, MS.REMOUNT],
  ro: [false, MS.RDONLY],
  rw: [true, MS.RDONLY],
  silent: [false, MS.SILENT],
  strictatime: [false, MS.STRICTATIME],
  suid: [true, MS.NOSUID],
  sync: [false, MS.SYNCHRONOUS],
};

/** Propagation names (runc applies them with separate mount calls). */
const PROPAGATION: Readonly<Record<string, number>> = {
  private: MS.PRIVATE,
  rprivate: MS.PRIVATE | MS.REC,
  shared: MS.SHARED,
  rshared: MS.SHARED | MS.REC,
  slave: MS.SLAVE,
  rslave: MS.SLAVE | MS.REC,
  unbindable: MS.UNBINDABLE,
  runbindable: MS.UNBINDABLE | MS.REC,
};

/**
 * runc's recursive attributes (`rro`, `rnosuid`, ..., applied with mount_setattr(2) over the whole
 * tree). A bind here is not recursive on the host (the mount worker binds one mount), so the
 * non-recursive flag is the same thing.
 */
const RECURSIVE: Readonly<Record<string, string>> = {
  rro: 'ro',
  rrw: 'rw',
  rnosuid: 'nosuid',
  rsuid: 'suid',
  rnodev: 'nodev',
  rdev: 'dev',
  rnoexec: 'noexec',
  rexec: 'exec',
  rnodiratime: 'nodiratime',
  rdiratime: 'diratime',
  rrelatime: 'relatime',
  rnorelatime: 'norelatime',
  rnoatime: 'noatime',
  ratime: 'atime',
  rstrictatime: 'strictatime',
  rnostrictatime: 'nostrictatime',
  rnosymfollow: 'nosymfollow',
  rsymfollow: 'symfollow',
};

/** runc's own extensions that have no mount(2) meaning; not supported in the guest, so dropped. */
const IGNORED = new Set(['tmpcopyup', 'symfollow']);

export interface ParsedOptions {
  /** MS_* bits, propagation excluded. */
  readonly flags: number;
  /** Propagation bits (MS_PRIVATE, MS_SHARED, ...): the guest makes every mount private, so they are informational. */
  readonly propagation: number;
  /** Filesystem options for the kernel, comma-joined, in order. */
  readonly data: string;
  /** Any of `bind`/`rbind` was given. */
  readonly bind: boolean;
  /** The options named `idmap`/`ridmap` (id-mapped mounts): the caller refuses them. */
  readonly idmapped: boolean;
}

/** Translate one mount's options (runc `parseMountOptions`). Later options win over earlier ones. */
export function parseMountOptions(options: readonly string[]): ParsedOptions {
  let flags = 0;
  let propagation = 0;
  let bind = false;
  let idmapped = false;
  const data: string[] = [];
  for (const raw of options) {
    const o = Object.hasOwn(RECURSIVE, raw) ? RECURSIVE[raw]! : raw;
    const f = Object.hasOwn(FLAGS, o) ? FLAGS[o] : undefined;
    if (f) {
      const [clear, bit] = f;
      flags = clear ? flags & ~bit : flags | bit;
      if (o === 'bind' || o === 'rbind') bind = true;
    } else if (Object.hasOwn(PROPAGATION, o)) {
      propagation |= PROPAGATION[o]!;
    } else if (o === 'idmap' || o === 'ridmap') {
      idmapped = true;
    } else if (!IGNORED.has(o) && o !== '') {
      data.push(o);
    }
  }
  return { flags, propagation, data: data.join(','), bind, idmapped };
}
