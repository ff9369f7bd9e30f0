/** Kubernetes emptyDir handling for pod containers (kata-create-spec.md §1.6 step 1). */
import { readFile } from 'node:fs/promises';
import type { OciMount } from './oci.ts';

export const K8S_EMPTY_DIR = 'kubernetes.io~empty-dir';
/** A guest tmpfs shared by the pod's containers. */
export const EPHEMERAL_TYPE = 'ephemeral';
/** A directory created inside the guest. */
export const LOCAL_TYPE = 'local';

/** A source is an emptyDir if its second-to-last `/` component is `kubernetes.io~empty-dir`. */
export function isEmptyDirSource(source: string): boolean {
  const parts = source.split('/');
  return parts.length > 1 && parts[parts.length - 2] === K8S_EMPTY_DIR;
}

/**
 * Rewrite the mount types of emptyDirs; call it for `pod_container` only (the sandbox path never does).
 * An emptyDir whose source is a tmpfs mount point becomes `ephemeral` (always); any other emptyDir
 * becomes `local` unless `disableGuestEmptyDir`, in which case it stays a host bind mount.
 * Returns new mount objects; the input is not modified.
 */
export async function setEphemeralStorageType(
  mounts: readonly OciMount[],
  disableGuestEmptyDir: boolean,
  isTmpfsMountPoint: (path: string) => Promise<boolean>,
): Promise<OciMount[]> {
  return Promise.all(
    mounts.map(async (m) => {
      if (!isEmptyDirSource(m.source)) return m;
      if (await isTmpfsMountPoint(m.source)) return { ...m, type: EPHEMERAL_TYPE };
      return disableGuestEmptyDir ? m : { ...m, type: LOCAL_TYPE };
    }),
  );
}

const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/**
 * Whether `path` is a tmpfs mount point according to `/proc/mounts` text: an exact mount-point match,
 * with the kernel's octal escapes (`\040` for a space) decoded. When a path is mounted several times,
 * the last (visible) entry decides; Kata takes the first.
 */
export function isTmpfsIn(procMounts: string, path: string): boolean {
  let fsType: string | undefined;
  for (const line of procMounts.split('\n')) {
    const f = line.split(/\s+/);
    if (f.length >= 3 && unescape(f[1] ?? '') === path) fsType = f[2];
  }
  return fsType === 'tmpfs';
}

/** The real check: reads `/proc/mounts`. An unreadable file means "not tmpfs". */
export async function isTmpfsMountPoint(path: string): Promise<boolean> {
  const text = await readFile('/proc/mounts', 'utf8').catch(() => '');
  return isTmpfsIn(text, path);
}
