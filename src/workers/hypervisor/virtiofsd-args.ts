/**
 * Pure pieces of a virtiofsd launch: which daemon (the C one of Debian 12's QEMU, or the Rust one that
 * Debian 13 packages on its own), which flavour a binary is, and its command line. Both flavours serve
 * the share in `chroot` sandbox mode: one process in the host's mount namespace, so mounts made under the
 * share after the start (a pod's later containers) are seen by the guest, as with 9p.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { err } from '../../errors.ts';
import type { VirtioFsSpec } from '../../domain/ops.ts';

/** Where Debian puts virtiofsd: the Rust package (Debian 13) first, then QEMU's C daemon (Debian 12). */
export const VIRTIOFSD_PATHS = ['/usr/libexec/virtiofsd', '/usr/lib/qemu/virtiofsd'] as const;

/** The first of {@link VIRTIOFSD_PATHS} that exists, if any. */
export const findVirtiofsd = (exists: (p: string) => boolean = existsSync): string | undefined =>
  VIRTIOFSD_PATHS.find((p) => exists(p));

export type Flavour = 'c' | 'rust';
const CACHES: Record<Flavour, Record<string, string>> = {
  c: { never: 'none', none: 'none', auto: 'auto', always: 'always' },
  rust: { never: 'never', none: 'never', metadata: 'metadata', auto: 'auto', always: 'always' },
};

/** The flavour from `virtiofsd --version` (C: `virtiofsd version 7.2…`; Rust: `virtiofsd 1.13.0`). */
export function flavourOf(versionText: string, path: string): Flavour {
  if (/^virtiofsd version /m.test(versionText)) return 'c';
  if (/^virtiofsd v?\d/m.test(versionText)) return 'rust';
  return path.startsWith('/usr/lib/qemu/') ? 'c' : 'rust';
}

const flavours = new Map<string, Flavour>();
/** A binary's flavour, asked once per path (`--version`, 2 s at most). */
export function probeFlavour(path: string): Flavour {
  let f = flavours.get(path);
  if (!f) {
    const r = spawnSync(path, ['--version'], { encoding: 'utf8', timeout: 2000 });
    f = flavourOf(`${r.stdout ?? ''}${r.stderr ?? ''}`, path);
    flavours.set(path, f);
  }
  return f;
}

/** The daemon a spec asks for (empty: the one found here); NotFound when it does not exist. */
export function daemonPath(v: VirtioFsSpec, exists: (p: string) => boolean = existsSync): string {
  const path = v.daemon || findVirtiofsd(exists);
  if (!path || !exists(path))
    throw err.notFound(
      `virtiofsd ${path ?? `(none of ${VIRTIOFSD_PATHS.join(', ')})`} does not exist: set virtio_fs_daemon, or ` +
        'install it (Debian 12: qemu-system-common; Debian 13: virtiofsd)',
    );
  return path;
}

/** virtiofsd's arguments for a share; InvalidArgument for a cache mode the flavour lacks. */
export function virtiofsdArgs(f: Flavour, o: { socket: string; sharedDir: string; v: VirtioFsSpec }): string[] {
  const cache = CACHES[f][o.v.cache];
  if (!cache)
    throw err.invalid(
      `virtio_fs_cache ${JSON.stringify(o.v.cache)}: want one of ${Object.keys(CACHES[f]).join(', ')} (${f} virtiofsd)`,
    );
  if (f === 'c') {
    // The C daemon splits -o values at commas.
    if (o.sharedDir.includes(','))
      throw err.invalid(`sharedDir ${o.sharedDir}: the C virtiofsd cannot serve a path with a comma`);
    const opts = [`source=${o.sharedDir}`, `cache=${cache}`, 'sandbox=chroot'];
    return [`--socket-path=${o.socket}`, ...opts.flatMap((x) => ['-o', x]), ...o.v.extraArgs];
  }
  return [
    `--socket-path=${o.socket}`,
    `--shared-dir=${o.sharedDir}`,
    `--cache=${cache}`,
    '--sandbox=chroot',
    ...o.v.extraArgs,
  ];
}
