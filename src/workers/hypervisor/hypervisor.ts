/**
 * The Hypervisor interface: what the hypervisor worker needs from a VMM driver, and all it uses.
 * Two drivers implement it: `QemuDriver` (qemu.ts: real QEMU guests) and `SimDriver` (sim.ts: simulated
 * VMs for scale tests and benchmarks). No NATS here: the worker maps ops and events onto the bus.
 */
import type {
  Adoption,
  BootSpec,
  CgroupWrite,
  ConsoleSize,
  ContainerStats,
  ExecSpec,
  HypervisorOps,
  ManagedVm,
  ProcessRef,
  ProcessSpec,
  ScannedVm,
  WorkerEvent,
} from '../../domain/ops.ts';

export type { Adoption, AdoptedVm, LostVm, ManagedVm } from '../../domain/ops.ts';

export type ExitEvent = Extract<WorkerEvent, { kind: 'exit' }>;
export type VmExitEvent = Extract<WorkerEvent, { kind: 'vmExit' }>;
export type OomEvent = Extract<WorkerEvent, { kind: 'oom' }>;

/** A VM as a driver describes it, without its processes. */
export type VmInfo = Omit<ManagedVm, 'processes'>;

/** What a boot resolves with: the VMM's pid, the accelerator it runs on, and how long the boot took. */
export type BootResult = HypervisorOps['boot']['res'];

/** Events of a hypervisor: event name → listener arguments (the map Node's typed EventEmitter takes). */
export interface HypervisorEvents {
  /**
   * Output of a container's process (`execId` undefined) or of one of its execs: fd 1 (stdout; a terminal's
   * output too) or 2 (stderr), in the order the guest wrote it.
   */
  output: [sandboxId: string, containerId: string, fd: 1 | 2, data: Uint8Array, execId?: string];
  /** A process ended (status: exit code, or 128 + signal; 255 when its VM went away first). */
  exit: [ExitEvent];
  /** The guest's OOM killer killed a process of the container (emitted before that process's exit). */
  oom: [OomEvent];
  /** A VMM ended without being asked to (see {@link Hypervisor.on}). */
  vmExit: [VmExitEvent];
}
export type HypervisorEvent = keyof HypervisorEvents;
export type Listener<E extends HypervisorEvent> = (...args: HypervisorEvents[E]) => void;

/**
 * A VMM driver: boots and stops VMs, one per sandbox, and runs container processes in them.
 *
 * Every member that names a sandbox acts only on VMs of this driver (and, for `stop`, on orphaned VMMs of
 * that sandbox it may treat as its own); several drivers may share a host.
 */
export interface Hypervisor {
  /**
   * Start a VM for `spec.sandboxId` and resolve once its guest agent is ready to run processes.
   *
   * - Any failure (the signal aborting, a deadline, the VMM exiting early) leaves nothing behind (no process,
   *   socket or log file) and rejects with a CorralError: the signal's reason (Timeout, Cancelled), NotFound
   *   for missing image files, InvalidArgument for a bad spec, Unavailable when `accel: 'kvm'` cannot work.
   * - `accel: 'auto'` tries KVM where it may work and falls back to TCG; the choice is remembered.
   * - A sandbox that has a VM already: AlreadyExists, unless that VM was adopted from an earlier driver (a boot
   *   re-issued after a worker restart), which is then the answer (`bootMs: 0`).
   */
  boot(spec: BootSpec, signal: AbortSignal): Promise<BootResult>;

  /**
   * Stop the sandbox's VM, escalating as `deadlineMs` (epoch ms) nears, and resolve once it is gone: its
   * processes have had their `exit` (status 255), its files are removed. No `vmExit` is emitted. A VM still
   * booting or being adopted is cancelled (the boot rejects with Cancelled). Idempotent: with no VM,
   * `{stopped: false}`, unless an orphaned VMM of that sandbox was found and ended.
   * @default deadlineMs now + 10 s
   */
  stop(sandboxId: string, deadlineMs?: number): Promise<{ stopped: boolean }>;

  /** Stop every VM of this driver (as `stop` does, all at once). @default deadlineMs now + 10 s */
  stopAll(deadlineMs?: number): Promise<void>;

  /**
   * Run a container's process in the sandbox's guest; resolve once it was started (`pid`: in the guest).
   * Waits while the VM is being adopted. NotFound without a VM, FailedPrecondition while it is not running,
   * AlreadyExists when the container has a process, InvalidArgument for a bad spec; the guest's refusal keeps
   * its errno's code (ENOENT → NotFound, ...). The spec's setup (stdin, terminal, mounts, limits, hostname)
   * is applied in the guest before the process runs; a failure there is a failed start.
   *
   * Every process whose start resolved gets exactly one `exit` event, on a later macrotask than the start's
   * resolution, so that a caller can answer the start before it publishes the exit.
   */
  startProcess(spec: ProcessSpec): Promise<{ started: true; pid: number }>;

  /**
   * Send signal `sig` (1..64) to a container's process (or exec `execId`), or with `all` to every process of
   * the container (of the exec). `delivered: false` when it has no running process (or its VM is still being
   * adopted: await {@link settled} first). NotFound when the sandbox has no VM.
   */
  signal(sandboxId: string, containerId: string, sig: number, all?: boolean, execId?: string): { delivered: boolean };

  /**
   * Start an exec in a running container (its rootfs, mount namespace, cgroup); as `startProcess`, with its
   * output and exit carrying `execId`. NotFound when the container's init does not run; AlreadyExists for an
   * exec id in use.
   */
  exec(spec: ExecSpec): Promise<{ started: true; pid: number }>;

  /**
   * Feed a process's stdin (started with `stdin`, or a terminal). Resolves once the bytes were sent within
   * the guest's window for that process: a caller that awaits each write never makes anyone buffer more than
   * the window. FailedPrecondition when the process does not run.
   */
  writeStdin(ref: ProcessRef, data: Uint8Array): Promise<void>;
  /** EOF on a process's stdin once what was written is; idempotent, an ended process is success. */
  closeStdin(ref: ProcessRef): Promise<{ closed: boolean }>;
  /** A terminal's new size. FailedPrecondition when the process has no terminal or does not run. */
  resize(ref: ProcessRef, size: ConsoleSize): Promise<{ resized: boolean }>;
  /** Freeze (thaw) a container's cgroup in the guest; without `containerId`, every container of the sandbox. */
  pause(sandboxId: string, containerId?: string): Promise<{ paused: boolean }>;
  resume(sandboxId: string, containerId?: string): Promise<{ resumed: boolean }>;
  /** Write a container's cgroup limits in the guest. */
  update(sandboxId: string, containerId: string, limits: CgroupWrite[]): Promise<{ updated: boolean }>;
  /** A container's cgroup counters in the guest. */
  stats(sandboxId: string, containerId: string): Promise<ContainerStats>;
  /**
   * Output back-pressure: stop (`false`) or go on (`true`) reading a VM's guest output; while stopped, the
   * guest buffers it and then its processes block.
   */
  setReading(sandboxId: string, on: boolean): void;

  /** Resolves once the sandbox's VM (if any) is no longer being adopted. */
  settled(sandboxId: string): Promise<void>;

  /** The VMs this driver runs (booting and adopting ones included), with the containers running in each. */
  list(): ManagedVm[];

  /** The VMMs on the host that this driver may treat as its own: tagged with its owner, or untagged. */
  scanHost(): ScannedVm[];

  /**
   * Take over the VMs an earlier driver with the same owner left running (a worker that died): each is
   * registered at once (state `adopting`), its processes carry on as this driver's, and the exits that happened
   * while nobody listened are emitted. A VM that cannot be adopted is stopped and reported as `vmExit`, and so
   * is one that the registry lists but whose VMM exited meanwhile. Resolves once every adoption has settled.
   */
  adoptAll(): Promise<Adoption>;

  /**
   * Listen to the driver's events.
   * - `output`, `oom` and `exit`: of the processes `startProcess` started (or that an adopted VM's guest still runs).
   * - `vmExit`: a VMM died without being asked to (after its processes' `exit` events), or a VM left by an
   *   earlier driver could not be adopted, or was found gone. `stop` and failed boots do not emit it.
   */
  on<E extends HypervisorEvent>(event: E, listener: Listener<E>): this;
  off<E extends HypervisorEvent>(event: E, listener: Listener<E>): this;
}
