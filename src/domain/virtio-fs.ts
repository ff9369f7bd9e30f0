/** The virtio-fs part of a boot spec (domain/ops.ts BootSpec, domain/pool.ts VmClass). */
/** How a sandbox's virtio-fs share is served: one virtiofsd per sandbox, run as root by the hypervisor worker. */
export interface VirtioFsSpec {
  /**
   * The virtiofsd binary (`virtio_fs_daemon`): the C one of Debian 12's QEMU (`/usr/lib/qemu/virtiofsd`) or
   * the Rust one (`/usr/libexec/virtiofsd`, Debian 13). Empty: whichever of those two exists.
   */
  daemon: string;
  /** `virtio_fs_cache`: `never` (the C daemon's `none`), `metadata` (Rust only), `auto` or `always`. */
  cache: string;
  /** `virtio_fs_extra_args`, appended to virtiofsd's command line as they are. */
  extraArgs: string[];
  /** `virtio_fs_queue_size`: the device's queue size; 0 leaves QEMU's default. */
  queueSize: number;
}
