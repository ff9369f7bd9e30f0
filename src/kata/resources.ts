/**
 * OCI `linux.resources` (cgroup v1 vocabulary) → cgroup v2 file writes for the container's cgroup in the
 * guest, converted as runc does (libcontainer/cgroups/fs2 and `ConvertMemorySwapToCgroupV2Value`,
 * `ConvertCPUSharesToCgroupV2Value`). Two entry points: the create path (a parsed spec's resources) and
 * containerd's Update (an untrusted wire map of the same shape, validated here).
 *
 * Not converted (the guest accepts only the files in {@link CgroupFile}): `memory.reservation` (runc:
 * memory.low), `cpu.mems` (cpuset.mems), `cpu.realtime*`, block I/O, hugepages, devices, network.
 */
import { err } from '../errors.ts';
import { isRecord } from './util.ts';

/** The cgroup v2 files the guest agent writes (domain/ops.ts `CgroupWrite`; kata does not import domain). */
export type CgroupFile =
  'memory.max' | 'memory.high' | 'memory.swap.max' | 'cpu.max' | 'cpu.weight' | 'pids.max' | 'cpuset.cpus';
export interface CgroupLimit {
  file: CgroupFile;
  value: string;
}

/** The resources that convert (the OciResources fields, and containerd Update's LinuxResources, camelCase). */
export interface LimitResources {
  readonly memory?: { readonly limit?: number; readonly swap?: number };
  readonly cpu?: {
    readonly quota?: number;
    readonly period?: number;
    readonly shares?: number;
    readonly cpus?: string;
  };
  readonly pids?: { readonly limit?: number };
}

/** The kernel's cpu.max bounds (kernel/sched/core.c): period 1 ms..1 s, quota at least 1 ms. */
const MIN_PERIOD = 1000;
const MAX_PERIOD = 1_000_000;
const MIN_QUOTA = 1000;
const CPUSET = /^\s*\d+(-\d+)?(\s*,\s*\d+(-\d+)?)*\s*$/;

/** runc's numToStr: 0 is unset, -1 is "max". */
const numToStr = (v: number): string | undefined => (v === 0 ? undefined : v === -1 ? 'max' : String(v));

/**
 * runc's `ConvertCPUSharesToCgroupV2Value` (runc ≥ 1.3.2, crun ≥ 1.23, Kata runtime-rs): a quadratic in
 * log2(shares) that maps 2 → 1, 1024 (v1's default) → 100 (v2's default) and 262144 → 10000. 0 is unset.
 * (Older runc used the linear `1 + (shares - 2) * 9999 / 262142`, which put 1024 at 39.)
 */
export function cpuSharesToWeight(shares: number): number {
  if (shares === 0) return 0;
  if (shares <= 2) return 1;
  if (shares >= 262144) return 10000;
  const l = Math.log2(shares);
  const exponent = (l * l + 125 * l) / 612.0 - 7.0 / 34.0;
  return Math.ceil(Math.pow(10, exponent));
}

/**
 * runc's `ConvertMemorySwapToCgroupV2Value`: OCI's swap is memory+swap; cgroup v2's memory.swap.max is
 * swap alone. Returns the value to write, or undefined for "leave it".
 */
function swapValue(swap: number, memory: number, f: string): string | undefined {
  if (memory === -1 && swap === 0) return 'max';
  if (swap === -1) return 'max';
  if (swap === 0) return undefined;
  if (memory === 0 || memory === -1) throw err.invalid(`${f}.swap: unable to set a swap limit without a memory limit`);
  if (swap < memory) throw err.invalid(`${f}.swap (${swap}) must be >= ${f}.limit (${memory}) (it is memory+swap)`);
  return String(swap - memory);
}

/** A limit that is -1 (unlimited), 0 (unset) or positive. */
function limitOf(v: number | undefined, f: string): number {
  if (v === undefined) return 0;
  if (v < -1) throw err.invalid(`${f} must be -1 (unlimited), 0 (unset) or positive, got ${v}`);
  return v;
}

/**
 * The cgroup writes for `r`, in runc's order (memory.swap.max before memory.max, cpu.weight before
 * cpu.max, then cpuset, pids). `where` prefixes field names in errors (`linux.resources`).
 * @throws InvalidArgument naming the field for values the kernel would refuse.
 */
export function cgroupLimits(r: LimitResources, where = 'linux.resources'): CgroupLimit[] {
  const out: CgroupLimit[] = [];
  const add = (file: CgroupFile, value: string | undefined) => value !== undefined && out.push({ file, value });

  const mf = `${where}.memory`;
  const memory = limitOf(r.memory?.limit, `${mf}.limit`);
  const swap = limitOf(r.memory?.swap, `${mf}.swap`);
  // memory+swap equal to memory: no swap at all ("0").
  add('memory.swap.max', swapValue(swap, memory, mf));
  add('memory.max', numToStr(memory));

  const cf = `${where}.cpu`;
  const cpu = r.cpu ?? {};
  if (cpu.shares !== undefined && cpu.shares < 0) throw err.invalid(`${cf}.shares must not be negative`);
  const weight = cpuSharesToWeight(cpu.shares ?? 0);
  add('cpu.weight', weight === 0 ? undefined : String(weight));
  const quota = cpu.quota ?? 0;
  const period = cpu.period ?? 0;
  if (quota < -1) throw err.invalid(`${cf}.quota must be -1 (unlimited), 0 (unset) or positive, got ${quota}`);
  if (quota > 0 && quota < MIN_QUOTA) throw err.invalid(`${cf}.quota must be at least ${MIN_QUOTA} µs, got ${quota}`);
  if (period !== 0 && (period < MIN_PERIOD || period > MAX_PERIOD))
    throw err.invalid(`${cf}.period must be ${MIN_PERIOD}..${MAX_PERIOD} µs, got ${period}`);
  if (quota !== 0 || period !== 0) add('cpu.max', `${quota > 0 ? quota : 'max'}${period !== 0 ? ` ${period}` : ''}`);
  if (cpu.cpus !== undefined && cpu.cpus !== '') {
    if (!CPUSET.test(cpu.cpus))
      throw err.invalid(`${cf}.cpus must be a CPU list such as "0-2,4", got ${JSON.stringify(cpu.cpus)}`);
    add('cpuset.cpus', cpu.cpus.replace(/\s+/g, ''));
  }

  const pids = r.pids?.limit;
  if (pids !== undefined) add('pids.max', pids <= 0 ? 'max' : String(pids));
  return out;
}

const U64 = Number.MAX_SAFE_INTEGER;

/**
 * containerd's Update: its LinuxResources (camelCase over the wire; unknown sections are ignored, as
 * an Update changes only what it names) → the cgroup writes. Shapes are checked here: numbers must be
 * safe integers, negatives only where -1 means unlimited.
 * @throws InvalidArgument `update: resources.<field> must be ...`.
 */
export function updateLimits(resources: unknown): CgroupLimit[] {
  const f = 'update: resources';
  const isMap = (v: unknown): v is Record<string, unknown> =>
    isRecord(v) && !(v instanceof Uint8Array) && !(v instanceof Date);
  if (!isMap(resources)) throw err.invalid(`${f} must be a map`);
  const section = (k: string): Record<string, unknown> | undefined => {
    const v = resources[k];
    if (v === undefined || v === null) return undefined;
    if (!isMap(v)) throw err.invalid(`${f}.${k} must be a map`);
    return v;
  };
  const int = (s: Record<string, unknown> | undefined, sec: string, k: string, min: number): number | undefined => {
    const v = s?.[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > U64)
      throw err.invalid(`${f}.${sec}.${k} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    return v;
  };
  const mem = section('memory');
  const cpu = section('cpu');
  const pids = section('pids');
  const cpus = cpu?.cpus;
  if (cpus !== undefined && cpus !== null && typeof cpus !== 'string')
    throw err.invalid(`${f}.cpu.cpus must be a string`);
  const pidsLimit = int(pids, 'pids', 'limit', -1);
  return cgroupLimits(
    {
      memory: { limit: int(mem, 'memory', 'limit', -1), swap: int(mem, 'memory', 'swap', -1) },
      cpu: {
        quota: int(cpu, 'cpu', 'quota', -1),
        period: int(cpu, 'cpu', 'period', 0),
        shares: int(cpu, 'cpu', 'shares', 0),
        ...(typeof cpus === 'string' ? { cpus } : {}),
      },
      ...(pidsLimit === undefined ? {} : { pids: { limit: pidsLimit } }),
    },
    f,
  );
}
