/**
 * What a guest process is made of, as the hypervisor worker's ops take it (domain/ops.ts): the process
 * from config.json, the container's mounts, limits and terminal, exec specs, stdin chunks and the stats
 * the guest reports.
 */
/** What the process inside the guest runs (from config.json's `process`). */
export interface ProcessPlan {
  args: string[];
  env: string[];
  cwd: string;
  uid: number;
  gid: number;
  additionalGids: number[];
  terminal: boolean;
}

/**
 * A mount inside the container's root in the guest (from config.json `mounts`), already translated the
 * way runc does: `flags` are MS_* bits, `data` the filesystem options the kernel parses. `target` is
 * absolute inside the container root; `source` is a path in the guest for binds (under the share), else
 * the fs source (`proc`, `tmpfs`, ...). A bind with MS_RDONLY is bound, then remounted read-only.
 */
export interface GuestMount {
  source: string;
  target: string;
  fstype: string;
  flags: number;
  data: string;
  /** A bind of a file (not a directory): the target is created as an empty file. */
  file?: boolean;
}

/** cgroup v2 files of a container's cgroup in the guest and what to write to them (e.g. `memory.max`). */
export interface CgroupWrite {
  file: 'memory.max' | 'memory.high' | 'memory.swap.max' | 'cpu.max' | 'cpu.weight' | 'pids.max' | 'cpuset.cpus';
  value: string;
}

/** The terminal size (containerd's ResizePty: width = columns, height = rows). */
export interface ConsoleSize {
  rows: number;
  cols: number;
}

/** What the container's init process gets besides its process: its mounts, limits and terminal. */
export interface ContainerSetup {
  /** Keep stdin open (fed over `io.<task>.stdin`, closed by `closeStdin`); else stdin is /dev/null. */
  stdin?: boolean;
  mounts?: GuestMount[];
  limits?: CgroupWrite[];
  hostname?: string;
  /**
   * config.json `root.readonly`: the guest makes the container's root read-only once its mounts are in place
   * (the host shares the root writable, so mount targets the image lacks can be made, as runc and Kata do).
   */
  rootReadonly?: boolean;
  consoleSize?: ConsoleSize;
}

/** A container's process, as `startProcess` receives it: the plan's process plus where it runs. */
export interface ProcessSpec extends ProcessPlan, ContainerSetup {
  sandboxId: string;
  containerId: string;
}

/** A process of a container or one of its execs: `execId` absent means the container's init process. */
export interface ProcessRef {
  sandboxId: string;
  containerId: string;
  execId?: string;
}

/**
 * An exec's process (containerd's Exec + Start): runs in the container's root, mount namespace and
 * cgroup in the guest. Exec ids are unique per container.
 */
export interface ExecSpec extends ProcessPlan {
  sandboxId: string;
  containerId: string;
  execId: string;
  stdin?: boolean;
  consoleSize?: ConsoleSize;
}

/** A container's cgroup v2 counters in the guest (containerd's cgroups v2 Metrics, the fields it fills). */
export interface ContainerStats {
  cpu: { usageUsec: number; userUsec: number; systemUsec: number; nrPeriods: number; nrThrottled: number };
  memory: { usage: number; limit: number | null; anon: number; file: number; oomKills: number };
  pids: { current: number; limit: number | null };
}

/**
 * The stdin data plane (not a worker op): the hypervisor worker serves `io.<task>[.exec.<execId>].stdin`
 * (`subjects.stdin`) with request/reply per chunk, in order. A chunk is answered once the guest has room
 * for it (its window), so a client with a bounded number of chunks in flight never makes anyone buffer
 * more than that. `seq` starts at 0 per process; a repeated seq is answered again without writing twice.
 */
export interface StdinChunk {
  seq: number;
  data?: Uint8Array;
  /** End of input: the process's stdin is closed once what came before is written (containerd's CloseIO). */
  eof?: boolean;
}
