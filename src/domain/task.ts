/**
 * Task API values (containerd's CreateTaskRequest and friends, camelCase). The agent validates wire
 * bodies into these once, at the edge (src/bus/task-requests.ts); machines only ever see these types.
 */
import type { WireError } from '../errors.ts';
import type { ContainerType } from '../kata/container-type.ts';
import type { CgroupWrite, ContainerSetup, MountSpec, ProcessPlan, Step } from './ops.ts';

export type { Compensation, ProcessPlan, Step } from './ops.ts';
/** Declared once, with the Kata rules that produce it (src/kata/container-type.ts); a type only. */
export type { ContainerType };

export interface CreateTaskRequest {
  id: string;
  bundle: string;
  rootfs: MountSpec[];
  terminal: boolean;
  stdin: string;
  stdout: string;
  stderr: string;
  checkpoint: string;
  parentCheckpoint: string;
  options: { configPath?: string };
}

/** containerd's task status enum, by name. */
export type TaskStatus = 'unknown' | 'created' | 'running' | 'stopped' | 'paused' | 'pausing';

/** A machine's answer to a command; `rid` pairs it with the NATS request that asked. */
export type Reply =
  | { type: 'reply'; rid: string; ok: true; result: unknown }
  | { type: 'reply'; rid: string; ok: false; error: WireError };

/**
 * The kinds of fact a task's machine emits. Only these in a task's records are its own: others carry its
 * taskId too (`lost`, written by a fleet controller when the node's heartbeats stop), and recovery,
 * which skips the facts already in the log, must not count them.
 */
export const FACT_KINDS = [
  'created',
  'started',
  'exited',
  'deleted',
  'failed',
  'rolledBack',
  'compensationFailed',
  'stepDone',
  'execAdded',
  'execStarted',
  'execExited',
  'execDeleted',
  'paused',
  'resumed',
  'oom',
] as const;
export type FactKind = (typeof FACT_KINDS)[number];
const factKinds: ReadonlySet<string> = new Set(FACT_KINDS);
export const isFactKind = (kind: string): kind is FactKind => factKinds.has(kind);

/** A lifecycle fact for the event log (past tense). */
export interface Fact {
  type: 'fact';
  kind: FactKind;
  data: Record<string, unknown>;
}

/** Everything a create needs after validation and configuration: pure data. */
export interface CreatePlan {
  type: ContainerType;
  sandboxId: string;
  bundle: string;
  steps: Step[];
  process: ProcessPlan;
  /** vCPUs / MiB the VM boots with (sandboxes only). */
  vcpus?: number;
  memoryMiB?: number;
  /**
   * What the guest sets up for the container's process (passed into `startProcess`): config.json's
   * `mounts` translated for the guest (for pod containers after Kata's emptyDir rewrite; their host
   * side is the plan's `bind`/`mkdir` steps into the share), `linux.resources` as cgroup v2 writes,
   * `hostname` and `root.readonly` (applied in the guest; plans recorded before made the root's bind
   * read-only instead). Absent in plans recorded before issue 8 (they had an unused `mounts` field instead).
   */
  setup?: Pick<ContainerSetup, 'mounts' | 'limits' | 'hostname' | 'rootReadonly'>;
  /** For a pod container: the VMM pid of its sandbox (the task pid, as in Kata). */
  hostPid?: number;
  /** The runtime config the sandbox was created with; its pod containers reuse it (Kata caches it per shim). */
  config?: {
    path: string;
    source: string;
    disableBlockDeviceUse: boolean;
    disableGuestEmptyDir: boolean;
    rootless: boolean;
  };
}

/** An exec's process as the Task API's `exec` gives it (containerd's ExecProcessRequest, its spec decoded). */
export interface ExecProcess extends ProcessPlan {
  /** Keep the process's stdin open (fed over the stdin data plane); else /dev/null. */
  stdin: boolean;
}

/** An exec of a task, as its machine keeps it: containerd's exec process states. */
export interface ExecRecord {
  process: ExecProcess;
  status: 'created' | 'running' | 'stopped';
  /** The guest's pid of the exec's process (0 until started). */
  guestPid: number;
  exitStatus: number | null;
  exitedAt: number | null;
}

/**
 * What a running task does besides kills, one at a time (each one worker op, journaled): start an exec,
 * freeze or thaw, resize a terminal, close a stdin, change limits, signal an exec.
 */
export type RunAct =
  | { op: 'execStart'; execId: string; process: ExecProcess }
  | { op: 'execSignal'; execId: string; signal: number; all: boolean }
  | { op: 'pause' }
  | { op: 'resume' }
  | { op: 'resize'; execId?: string; rows: number; cols: number }
  | { op: 'closeIO'; execId?: string }
  | { op: 'update'; limits: CgroupWrite[] };

/** What `state`, `list` and `wait` show of a task: containerd's State response, plus Corral's machine state. */
export interface TaskView {
  id: string;
  sandboxId: string;
  kind: 'sandbox' | 'container';
  bundle: string;
  pid: number;
  status: TaskStatus;
  /** The machine's state, e.g. `booting`, `rollingBack`, `stopped`. */
  state: string;
  exitStatus: number;
  exitedAt: number;
  createdAt: number;
  error?: { code: string; message: string };
  terminal: boolean;
  stdin: string;
  stdout: string;
  stderr: string;
}

/** An exec of a task as `state` shows it (containerd's State response for an exec id). */
export interface ExecView {
  id: string;
  execId: string;
  pid: number;
  guestPid: number;
  status: 'created' | 'running' | 'stopped';
  exitStatus: number;
  exitedAt: number;
  terminal: boolean;
  stdin: boolean;
}
