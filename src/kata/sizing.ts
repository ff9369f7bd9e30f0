/**
 * Sandbox sizing with Kata 3.2.0's integer formulas (kata-create-spec.md §4). The arithmetic runs on
 * bigint and reproduces Go's fixed-width wrap-around exactly (uint64 multiply, uint32 conversions).
 */
import { parseInt64, parseUint } from './strconv.ts';

/** Resources a workload asks for, in whole vCPUs and MiB. */
export interface Sizing {
  readonly vcpus: number;
  readonly memMiB: number;
}

export const SANDBOX_CPU_PERIOD = 'io.kubernetes.cri.sandbox-cpu-period';
export const SANDBOX_CPU_QUOTA = 'io.kubernetes.cri.sandbox-cpu-quota';
export const SANDBOX_MEMORY = 'io.kubernetes.cri.sandbox-memory';

const M64 = (1n << 64n) - 1n;
const M32 = 0xffff_ffffn;

/**
 * §4.3, 3.2.0: `milliCPU = uint32(uint64(quota)*1000 / period)` when quota ≥ 0 and period ≠ 0, else 0;
 * `vCPUs = uint32(milliCPU + 999) / 1000` (the floor to milli-CPU comes before the ceiling, so
 * quota=50/period=100000 gives 0); `MiB = memory < 0 ? 0 : uint32(memory / 2^20)`.
 */
export function calculateVmResources(period: bigint, quota: bigint, memory: bigint): Sizing {
  const milli = quota >= 0n && period !== 0n ? (((quota * 1000n) & M64) / period) & M32 : 0n;
  return {
    vcpus: Number(((milli + 999n) & M32) / 1000n),
    memMiB: memory < 0n ? 0 : Number((memory / 1_048_576n) & M32),
  };
}

/**
 * PodSandbox sizing from containerd's sandbox annotations (§4.1). A missing or unparsable value
 * counts as 0 (Kata logs a warning). Period is ParseUint, quota and memory are ParseInt (bytes).
 */
export function calculateSandboxSizing(
  spec: { readonly annotations?: Readonly<Record<string, string>> } | undefined,
): Sizing {
  const a = spec?.annotations;
  if (!a) return { vcpus: 0, memMiB: 0 };
  const get = (k: string) => (Object.hasOwn(a, k) ? a[k] : undefined);
  const u = (k: string) => parseUint(get(k) ?? '') ?? 0n;
  const i = (k: string) => parseInt64(get(k) ?? '') ?? 0n;
  return calculateVmResources(u(SANDBOX_CPU_PERIOD), i(SANDBOX_CPU_QUOTA), i(SANDBOX_MEMORY));
}

interface ResourcesLike {
  readonly cpu?: { readonly quota?: number; readonly period?: number };
  readonly memory?: { readonly limit?: number };
}

/**
 * SingleContainer sizing from `linux.resources` (§4.2): quota and period count only when both are
 * present; memory is `memory.limit` or 0. No linux or resources section → 0/0.
 */
export function calculateContainerSizing(
  spec: { readonly linux?: { readonly resources?: ResourcesLike } } | undefined,
): Sizing {
  const r = spec?.linux?.resources;
  if (!r) return { vcpus: 0, memMiB: 0 };
  const { quota, period } = r.cpu ?? {};
  const both = quota !== undefined && period !== undefined;
  return calculateVmResources(BigInt(both ? period : 0), BigInt(both ? quota : 0), BigInt(r.memory?.limit ?? 0));
}

/** The VM size at boot under `static_sandbox_resource_mgmt = true` (§4.3 "How the result is used", 2). */
export interface StaticSizing extends Sizing {
  /** `default_vcpus` / `default_memory` after annotation overrides. */
  readonly baseVcpus: number;
  readonly baseMemMiB: number;
}

/**
 * Static sizing: boot at base + workload (uint32 sums, as Go's). With static management off, the
 * sizing result does not affect boot at all; do not call this then.
 */
export const applyStaticSizing = (base: Sizing, workload: Sizing): StaticSizing => ({
  baseVcpus: base.vcpus,
  baseMemMiB: base.memMiB,
  vcpus: (base.vcpus + workload.vcpus) >>> 0,
  memMiB: (base.memMiB + workload.memMiB) >>> 0,
});
