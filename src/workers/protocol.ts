/**
 * The contract between the agent and its workers. Each op is a NATS request on
 * `corral.v1.node.<node>.worker.<kind>.<op>` (see `subjects.worker`), MessagePack both ways.
 *
 * Every request carries:
 * - `opId`: idempotency key. A worker that sees an opId again answers with the first outcome
 *   (success or error) without repeating the side effect.
 * - `deadlineMs`: wall-clock epoch ms after which the worker gives up, undoes what the op did so far,
 *   and answers `Timeout`.
 *
 * Every reply is `{ok: true, result}` or `{ok: false, error: WireError}`.
 */
import type { WireError } from '../errors.ts';
import type { ProcessPlan } from '../domain/task.ts';

export interface OpBase {
  opId: string;
  deadlineMs: number;
}

export interface MountSpec {
  type: string;
  source: string;
  options: string[];
}

/** Mount worker ops. Paths must lie under the worker's allowed roots, else InvalidArgument. */
export interface MountOps {
  /**
   * Mount each entry in order onto `target`, creating `target` (mode 0711, not recursive) if missing.
   * A failure unmounts what this op mounted and removes the directory if the op created it.
   */
  mountRootfs: { req: OpBase & { target: string; mounts: MountSpec[] }; res: { mounted: number; createdDir: boolean } };
  /** `mount --bind source target` (target created with parents). Read-only when `readonly`. */
  bind: { req: OpBase & { source: string; target: string; readonly?: boolean }; res: { createdDir: boolean } };
  /**
   * Unmount `target` and everything below it, newest first, until nothing is mounted there; then remove
   * the directory (or the placeholder file of a file bind) if `removeDir`. Missing target is success.
   * `lazy`: `umount -l` had to be used because the deadline was near.
   */
  unmountAll: {
    req: OpBase & { target: string; removeDir?: boolean };
    res: { unmounted: number; lazy: boolean; removedDir: boolean };
  };
  /** Create a directory with parents and a mode. */
  mkdir: { req: OpBase & { path: string; mode: number }; res: { created: boolean } };
  /** Remove a directory tree; refuses (FailedPrecondition) if anything is mounted at or below it. */
  removeTree: { req: OpBase & { path: string }; res: { removed: boolean } };
  /** What is mounted under the worker's roots right now (from /proc/self/mountinfo). */
  scan: { req: Partial<OpBase>; res: { mounts: { target: string; fstype: string; source: string }[] } };
}

export interface VmmUser {
  user: string;
  uid: number;
  gid: number;
  /** Supplementary groups (the gid of /dev/kvm). */
  groups: number[];
  /** `/run/user/<uid>`, mode 0750, owned by the user. */
  runtimeDir: string;
}

export interface BootSpec {
  sandboxId: string;
  vcpus: number;
  memoryMiB: number;
  kernel: string;
  initrd: string;
  kernelParams: string;
  machineType: string;
  /** `auto` tries KVM and falls back to TCG when the guest shows no sign of life in time. */
  accel: 'auto' | 'kvm' | 'tcg';
  /** Host directory shared into the guest over virtio-9p; container rootfs live at `<sharedDir>/<containerId>/rootfs`. */
  sharedDir: string;
  msize9p: number;
  /** Directory for the QMP and agent sockets (the VMM user's runtime dir when rootless). */
  runDir: string;
  /** Run QEMU as this user (rootless VMM). */
  user?: VmmUser;
}

/** A container's process, as `startProcess` receives it: the plan's process plus where it runs. */
export interface ProcessSpec extends ProcessPlan {
  sandboxId: string;
  containerId: string;
}

/** Hypervisor worker ops. */
export interface HypervisorOps {
  createUser: { req: OpBase & { sandboxId: string }; res: VmmUser };
  /** `userdel -f` and remove `/run/user/<uid>`. Missing user is success. */
  removeUser: { req: OpBase & { user: string; uid: number }; res: { removed: boolean } };
  /** Spawn QEMU and wait until the guest agent says ready. A failure leaves no process behind. */
  boot: { req: OpBase & BootSpec; res: { pid: number; accel: 'kvm' | 'tcg'; bootMs: number } };
  /** QMP quit, then SIGKILL after a grace period. Missing VM is success. */
  stop: { req: OpBase & { sandboxId: string }; res: { stopped: boolean } };
  /** Start a container's process in the guest; output and exit arrive as worker events. */
  startProcess: { req: OpBase & ProcessSpec; res: { started: boolean } };
  signal: { req: OpBase & { sandboxId: string; containerId: string; signal: number }; res: { delivered: boolean } };
  scan: { req: Partial<OpBase>; res: { vms: { sandboxId: string; pid: number }[]; users: string[] } };
}

/**
 * Worker events: `exit` of a process, `vmExit` of a VMM. Published as `{node, sandbox, kind: 'worker', at, event}`
 * on `corral.v1.evt.<node>.<sandbox>.worker`, so the event log keeps them.
 */
export type WorkerEvent =
  | { kind: 'exit'; sandboxId: string; containerId: string; exitStatus: number; exitedAt: number }
  | { kind: 'vmExit'; sandboxId: string; code: number | null; signal: string | null; at: number };

export type Reply<T> = { ok: true; result: T } | { ok: false; error: WireError };
