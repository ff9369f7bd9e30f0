/**
 * The contract between the agent and its workers, in one place: every worker operation with its
 * request and result, the create steps and compensations the machines sequence (each a discriminated
 * union over the operation it runs), and the facts workers report.
 *
 * Each op is a NATS request on `corral.v1.node.<node>.worker.<kind>.<op>` (`subjects.worker`),
 * MessagePack both ways. Every request carries:
 * - `opId`: idempotency key. A worker that sees an opId again answers with the first outcome
 *   (success or error) without repeating the side effect.
 * - `deadlineMs`: wall-clock epoch ms after which the worker gives up, undoes what the op did so far,
 *   and answers `Timeout`.
 *
 * Every reply is `{ok: true, result}` or `{ok: false, error: WireError}` (`Envelope` in bus/rpc.ts).
 * The agent calls ops through one typed client (`agent/worker-client.ts`); each worker serves them from
 * a handler table typed by {@link OpHandlers}, so a request, a result or an op name that does not match
 * this file does not compile.
 */
import type { NetModel, SandboxNetwork } from './network.ts';
import type { PoolOps, VmClass } from './pool.ts';
import type { CgroupWrite, ConsoleSize, ContainerStats, ExecSpec, ProcessRef, ProcessSpec } from './guest-process.ts';
import type { Adoption, ManagedVm, ScannedVm } from './vm-scan.ts';

export type { VirtioFsSpec } from './virtio-fs.ts';
export type {
  CgroupWrite,
  ConsoleSize,
  ContainerSetup,
  ContainerStats,
  ExecSpec,
  GuestMount,
  ProcessPlan,
  ProcessRef,
  ProcessSpec,
  StdinChunk,
} from './guest-process.ts';
export type { AdoptedVm, Adoption, LostVm, ManagedVm, ScannedVm } from './vm-scan.ts';

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
  /** What is mounted under the worker's roots right now (from /proc/self/mountinfo). A read: no opId. */
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

/** A boot: a VM of a class (pool.ts: what makes two boots interchangeable) for one sandbox. */
export interface BootSpec extends VmClass {
  sandboxId: string;
  /**
   * Host directory shared into the guest (over virtio-9p, or virtio-fs with `virtioFs`); container rootfs
   * live at `<sharedDir>/<containerId>/rootfs`.
   */
  sharedDir: string;
  /** Run QEMU as this user (rootless VMM). */
  user?: VmmUser;
  /** The sandbox's network (the network worker's `setup`): QEMU runs in its namespace, one virtio-net NIC per entry. */
  network?: SandboxNetwork;
}

/** Hypervisor worker ops. */
export interface HypervisorOps {
  createUser: { req: OpBase & { sandboxId: string }; res: VmmUser };
  /**
   * `userdel -f` and remove `/run/user/<uid>`. Missing user is success. Without `user` (its creation was
   * never confirmed): remove whatever user was made for `sandboxId`.
   */
  removeUser: {
    req: OpBase & ({ user: string; uid: number; sandboxId?: undefined } | { sandboxId: string; user?: undefined });
    res: { removed: boolean };
  };
  /** Spawn QEMU and wait until the guest agent says ready. A failure leaves no process behind. */
  /** `pooled`: the pool VM the sandbox claimed (domain/pool.ts), answered without a boot. */
  boot: { req: OpBase & BootSpec; res: { pid: number; accel: 'kvm' | 'tcg'; bootMs: number; pooled?: string } };
  claim: PoolOps['claim'];
  keep: PoolOps['keep'];
  pool: PoolOps['pool'];
  /** QMP quit, then SIGKILL after a grace period. Missing VM is success. */
  stop: { req: OpBase & { sandboxId: string }; res: { stopped: boolean } };
  /** Start a container's process in the guest; output and exit arrive as worker events. */
  startProcess: { req: OpBase & ProcessSpec; res: { started: boolean } };
  signal: {
    /** `all`: every process of the container (its process group in the guest), not only its main process. */
    req: OpBase & ProcessRef & { signal: number; all?: boolean };
    res: { delivered: boolean };
  };
  /** Start an exec's process; its output and exit arrive as for the init process, with its `execId`. */
  exec: { req: OpBase & ExecSpec; res: { started: boolean; guestPid: number } };
  /** Close a process's stdin (after what was fed so far is written). Idempotent; an ended process is success. */
  closeStdin: { req: OpBase & ProcessRef; res: { closed: boolean } };
  /** Set a process's terminal size (the guest's pty; its process gets SIGWINCH). No terminal: FailedPrecondition. */
  resize: { req: OpBase & ProcessRef & ConsoleSize; res: { resized: boolean } };
  /** Freeze (`pause`) or thaw a container's cgroup in the guest; without `containerId`, every container. */
  pause: { req: OpBase & { sandboxId: string; containerId?: string }; res: { paused: boolean } };
  resume: { req: OpBase & { sandboxId: string; containerId?: string }; res: { resumed: boolean } };
  /** Write a container's cgroup limits in the guest (containerd's Update). */
  update: {
    req: OpBase & { sandboxId: string; containerId: string; limits: CgroupWrite[] };
    res: { updated: boolean };
  };
  /** A read (no opId): a container's cgroup counters in the guest. */
  stats: { req: Partial<OpBase> & { sandboxId: string; containerId: string }; res: ContainerStats };
  /**
   * A read: no opId. `vms`: every Corral QEMU of this node (and untagged ones); `users`: the VMM users on the
   * host; `managed`: the VMs this worker runs; `adoption`: what it re-attached to when it started (null until
   * that has settled); `outputDropped`: bytes of guest output that could not be published, per process
   * (`container` or `container/execId`), since the worker started.
   */
  scan: {
    req: Partial<OpBase>;
    res: {
      vms: ScannedVm[];
      users: string[];
      managed: ManagedVm[];
      adoption: Adoption | null;
      outputDropped: Record<string, number>;
    };
  };
}

/**
 * Network worker ops (docs/decisions/0011-networking.md). `netns` is a network namespace's path (a
 * bind-mounted nsfs file, as `ip netns add` and CNI make); every command runs inside it.
 */
export interface NetworkOps {
  /**
   * Connect each veth in `netns` to a tap QEMU can use (`model`) and read what the guest needs (MAC, MTU,
   * addresses, routes). Anything of this sandbox already in the namespace (a setup a dead worker began) is
   * removed first. A failure removes what it made.
   * NotFound: no namespace at `netns`; FailedPrecondition: a veth already has an ingress qdisc (tcfilter).
   */
  setup: {
    req: OpBase & { sandboxId: string; netns: string; model: NetModel };
    res: SandboxNetwork & { skipped: string[] };
  };
  /**
   * Remove what `setup` made for `sandboxId` in `netns` (the taps and macvtaps carrying its alias and the
   * ingress qdiscs of their veths). A namespace that is gone is success.
   */
  teardown: { req: OpBase & { sandboxId: string; netns: string }; res: { removed: string[] } };
  /** Make a network namespace at `netns` (`/run/netns/<name>`) with loopback up; one that exists is success. */
  createNetns: { req: OpBase & { netns: string }; res: { created: boolean } };
  /** Remove a namespace `createNetns` made (unmount and delete its file). Missing is success. */
  removeNetns: { req: OpBase & { netns: string }; res: { removed: boolean } };
  /** A read (no opId): this node's sandboxes' links in the namespaces under /run/netns; Corral's namespaces. */
  scan: {
    req: Partial<OpBase>;
    res: { links: { netns: string; name: string; sandboxId: string; veth: string }[]; namespaces: string[] };
  };
}

export type WorkerKind = 'mount' | 'hypervisor' | 'network';
/** Every worker kind: the processes `corral agent --spawn-workers` supervises. */
export const WORKER_KINDS: readonly WorkerKind[] = ['mount', 'hypervisor', 'network'];
export interface WorkerOps {
  mount: MountOps;
  hypervisor: HypervisorOps;
  network: NetworkOps;
}
export type OpName<K extends WorkerKind> = keyof WorkerOps[K] & string;
type Spec<K extends WorkerKind, O extends OpName<K>> = WorkerOps[K][O] extends { req: infer Q; res: infer R }
  ? { req: Q; res: R }
  : never;
/** `Omit` over each member of a union (the built-in one merges the members first). */
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
/** What a caller sends for an op: its request without `opId`/`deadlineMs` (the client adds them). */
export type OpArgs<K extends WorkerKind, O extends OpName<K>> = DistributiveOmit<Spec<K, O>['req'], keyof OpBase>;
export type OpRequest<K extends WorkerKind, O extends OpName<K>> = Spec<K, O>['req'];
export type OpResult<K extends WorkerKind, O extends OpName<K>> = Spec<K, O>['res'];

/** What a handler gets besides its request: the op's deadline as a signal, and its idempotency key. */
export interface OpContext {
  signal: AbortSignal;
  deadlineMs: number;
  opId: string;
}
/**
 * A worker's handler table: one handler per op of its kind. Each validates its (untrusted) request
 * with the op's parser, then runs; its result must be the op's result type.
 */
export type OpHandlers<K extends WorkerKind> = {
  [O in OpName<K>]: (req: Record<string, unknown>, ctx: OpContext) => Promise<OpResult<K, O>>;
};

// ---- Create steps and their compensations ----

/**
 * The boot step's arguments: the boot spec without the VMM user and the network (known only once
 * createUser and setupNetwork ran).
 */
export type BootArgs = Omit<BootSpec, 'user' | 'network'> & { bootTimeoutMs?: number };

/**
 * One step of a create, as the machine sequences it. `phase` is the sandbox state shown while it runs;
 * `kind` names the worker op the agent runs for it; `args` is plain data computed by the plan.
 */
export type Step =
  | { phase: 'mounting'; kind: 'mountRootfs'; args: { target: string; mounts: MountSpec[] } }
  | { phase: 'mounting'; kind: 'mkdir'; args: { path: string; mode: number } }
  | { phase: 'mounting'; kind: 'bind'; args: { source: string; target: string; readonly?: boolean } }
  | { phase: 'preparingUser'; kind: 'createUser'; args: { sandboxId: string } }
  /** Kata's SetupNetworkNamespace: a namespace for a sandbox whose config.json names none. */
  | { phase: 'booting'; kind: 'createNetns'; args: { netns: string } }
  /** Kata's createNetwork. */
  | { phase: 'booting'; kind: 'setupNetwork'; args: { sandboxId: string; netns: string; model: NetModel } }
  /** Take a booted VM from the pool (domain/pool.ts), before anything is put into the share. */
  | {
      phase: 'booting';
      kind: 'claimVm';
      args: { sandboxId: string; sharedDir: string; vmClass: VmClass; keep: number };
    }
  | { phase: 'booting'; kind: 'boot'; args: BootArgs };
export type StepKind = Step['kind'];
export type StepOf<K extends StepKind> = Extract<Step, { kind: K }>;

/** What each step's op returns (the machine keeps it under `results[kind]`). */
export interface StepResults {
  mountRootfs: MountOps['mountRootfs']['res'];
  mkdir: MountOps['mkdir']['res'];
  bind: MountOps['bind']['res'];
  createUser: HypervisorOps['createUser']['res'];
  createNetns: NetworkOps['createNetns']['res'];
  setupNetwork: NetworkOps['setup']['res'];
  claimVm: HypervisorOps['claim']['res'];
  boot: HypervisorOps['boot']['res'];
}

/** The undo of a completed (or possibly completed) step, pushed on the compensation stack. */
export type Compensation = (
  | { kind: 'unmountAll'; args: { target: string; removeDir?: boolean } }
  | { kind: 'removeTree'; args: { path: string } }
  | { kind: 'removeUser'; args: { user: string; uid: number } | { sandboxId: string } }
  | { kind: 'stopVm'; args: { sandboxId: string } }
  | { kind: 'teardownNetwork'; args: { sandboxId: string; netns: string } }
  | { kind: 'removeNetns'; args: { netns: string } }
) & {
  /** The step it undoes, for logs and events. */
  undoes: string;
};
export type CompensationKind = Compensation['kind'];

// ---- Facts the workers report ----

/**
 * Worker events: `exit` of a process, `vmExit` of a VMM. Published as `{node, sandbox, kind: 'worker', at, event}`
 * on `corral.v1.evt.<node>.<sandbox>.worker`, so the event log keeps them.
 */
export type WorkerEvent =
  | { kind: 'exit'; sandboxId: string; containerId: string; execId?: string; exitStatus: number; exitedAt: number }
  /** The guest's OOM killer killed a process in the container's cgroup (reported before that process's exit). */
  | { kind: 'oom'; sandboxId: string; containerId: string; at: number }
  | { kind: 'vmExit'; sandboxId: string; code: number | null; signal: string | null; at: number };
