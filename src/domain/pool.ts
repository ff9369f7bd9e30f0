/**
 * The VM pool's contract (Kata's VMCache: `[factory] vm_cache_number`): the hypervisor worker keeps booted,
 * idle guests per VM class, and a create whose boot matches a class takes one instead of booting.
 *
 * A pooled create is two ops: `claim` (a create step run before the rootfs is bound into the share: the
 * pool VM's share directory, which its QEMU or virtiofsd already serves, is renamed onto the sandbox's
 * share path, and the VM becomes the sandbox's), then `boot`, which answers the claimed VM. A claim that
 * finds no idle VM of the class answers `claimed: false` and the boot boots cold, as without a pool.
 */
import type { VirtioFsSpec } from './virtio-fs.ts';

/**
 * What makes two boots interchangeable: every boot argument except the sandbox, its share and its
 * deadline. A create with a network or a rootless VMM user never claims (its QEMU must start in the
 * sandbox's namespace, as the sandbox's user).
 */
export interface VmClass {
  vcpus: number;
  memoryMiB: number;
  kernel: string;
  initrd: string;
  kernelParams: string;
  machineType: string;
  /** `auto` tries KVM and falls back to TCG when the guest shows no sign of life in time. */
  accel: 'auto' | 'kvm' | 'tcg';
  msize9p: number;
  /** Directory for the QMP, agent and virtiofsd sockets (the VMM user's runtime dir when rootless). */
  runDir: string;
  /** Share the sandbox's directory over virtio-fs (Kata's `shared_fs = "virtio-fs"`) instead of virtio-9p. */
  virtioFs?: VirtioFsSpec;
}

/** One pool VM, as `pool` lists it. */
export interface PoolVmView {
  vmId: string;
  /** The class's key ({@link classKey}). */
  classKey: string;
  state: 'booting' | 'idle';
  pid?: number;
  /** Epoch ms its boot started; `readyAt` when its guest agent said READY. */
  startedAt: number;
  readyAt?: number;
  /** Set on a VM taken over from a worker that died. */
  adopted?: boolean;
}

/** A class the pool keeps VMs of. */
export interface PoolClassView {
  classKey: string;
  vmClass: VmClass;
  /** How many idle VMs it keeps (the largest `vm_cache_number` a claim asked for). */
  keep: number;
  idle: number;
  booting: number;
  /** Claims that took a VM / found none, since the worker started. */
  hits: number;
  misses: number;
}

export interface PoolOps {
  /**
   * Take an idle VM of `vmClass` for `sandboxId` (and keep `keep` of that class from now on): its share
   * directory is renamed to `sharedDir` (which must not exist; its parent must), and the VM is the
   * sandbox's from then on, for every op and for adoption. `claimed: false` when none is idle.
   */
  claim: {
    req: { opId: string; deadlineMs: number; sandboxId: string; sharedDir: string; vmClass: VmClass; keep: number };
    res: { claimed: boolean; vmId?: string; pid?: number; bootedAt?: number };
  };
  /**
   * Keep `keep` idle VMs of `vmClass` from now on (the larger of this and what it kept), booting them in the
   * background: what the agent asks at start for the class of its node's default runtime config.
   */
  keep: { req: { opId: string; deadlineMs: number; vmClass: VmClass; keep: number }; res: { keep: number } };
  /** A read (no opId): the classes and the VMs of the pool. */
  pool: { req: { opId?: string; deadlineMs?: number }; res: { classes: PoolClassView[]; vms: PoolVmView[] } };
}

/** A class's key: its fields in a fixed order (equal classes, equal keys). */
export function classKey(c: VmClass): string {
  const v = c.virtioFs;
  return [
    c.vcpus,
    c.memoryMiB,
    c.kernel,
    c.initrd,
    c.kernelParams,
    c.machineType,
    c.accel,
    c.msize9p,
    c.runDir,
    v ? `virtio-fs:${v.daemon}:${v.cache}:${v.queueSize}:${v.extraArgs.join(' ')}` : 'virtio-9p',
  ].join('|');
}

/** The prefix of a pool VM's id: no container id can start with `_`, so none is ever a sandbox's. */
export const POOL_ID_PREFIX = '_pool-';
export const isPoolId = (id: string): boolean => id.startsWith(POOL_ID_PREFIX);
