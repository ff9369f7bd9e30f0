/** What to do with the request's rootfs entries (kata-create-spec.md §6.1). */
import { realpath, stat } from 'node:fs/promises';

/** One `Rootfs[]` entry of a create request. */
export interface RootfsEntry {
  readonly type: string;
  readonly source: string;
  readonly options: readonly string[];
}

/** `vc.NydusRootFSType`. */
export const NYDUS_ROOTFS_TYPE = 'fuse.nydus-overlayfs';

/**
 * - `none`: zero entries. The bundle's `rootfs` is assumed ready (docker/ctr style); nothing is
 *   mounted and nothing must be unmounted later. (Kata reports `Mounted=true` here and later runs
 *   `UnmountAll(<bundle>/rootfs)` on whatever is there; Corral does not unmount what it did not mount.)
 * - `block`: one entry whose source is a block device, block devices allowed: hot-plugged into the guest.
 * - `nydus`: one `fuse.nydus-overlayfs` entry: the guest/nydus handles it.
 * - `mount`: mount `mounts` in order onto `<bundle>/rootfs` (created with mode 0711 if missing);
 *   the only action that leaves something to unmount.
 */
export type RootfsAction = 'none' | 'mount' | 'block' | 'nydus';

export interface RootfsDecision {
  readonly action: RootfsAction;
  /** `mount`: the host mounts, in order; `block`/`nydus`: the entry handed to the guest; `none`: empty. */
  readonly mounts: readonly RootfsEntry[];
}

export interface RootfsOptions {
  /** `hypervisor.disable_block_device_use`. */
  readonly disableBlockDeviceUse: boolean;
  readonly isBlockDevice: (path: string) => Promise<boolean>;
}

/**
 * Kata's `checkAndMount` decision without its side effects. The block-device and nydus checks apply
 * only to a single entry; two or more entries are always mounted.
 */
export async function decideRootfs(rootfs: readonly RootfsEntry[], opts: RootfsOptions): Promise<RootfsDecision> {
  const [only] = rootfs;
  if (!only) return { action: 'none', mounts: [] };
  if (rootfs.length === 1) {
    if (!opts.disableBlockDeviceUse && (await opts.isBlockDevice(only.source)))
      return { action: 'block', mounts: [only] };
    if (only.type === NYDUS_ROOTFS_TYPE) return { action: 'nydus', mounts: [only] };
  }
  return { action: 'mount', mounts: [...rootfs] };
}

/** Kata's `IsBlockDevice`: symlinks resolved, then `S_IFBLK`. An empty path or any error → false. */
export async function isBlockDevice(path: string): Promise<boolean> {
  if (path === '') return false;
  try {
    return (await stat(await realpath(path))).isBlockDevice();
  } catch {
    return false;
  }
}
