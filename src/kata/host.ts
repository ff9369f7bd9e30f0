/** Host facts the configuration rules depend on; injected in tests. */
import * as os from 'node:os';

export interface HostInfo {
  /** Usable CPUs (Go's `runtime.NumCPU`). */
  readonly cpus: number;
  /** Total memory, MiB. */
  readonly memMiB: number;
  /** Node's `process.arch` naming: `x64`, `arm64`, `s390x`, `ppc64`. */
  readonly arch: string;
  /** The hypervisor's vCPU ceiling for this arch (govmm `MaxVCPUs`). */
  readonly maxVcpus: number;
}

/** govmm's per-arch maximum: x86 240, s390x 248, ppc64le 128, arm64 123 (GICv3; Kata reads it from the GIC). */
export const archMaxVcpus = (arch: string): number => ({ s390x: 248, ppc64: 128, arm64: 123 })[arch] ?? 240;

let host: HostInfo | undefined;

/**
 * This host, read from node:os once per process (as Go's runtime.NumCPU is read once): every create's
 * annotations are checked against it, and two syscalls per create were measurable (issue 13).
 */
export function hostInfo(): HostInfo {
  return (host ??= Object.freeze({
    cpus: os.availableParallelism(),
    memMiB: Math.floor(os.totalmem() / 1_048_576),
    arch: process.arch,
    maxVcpus: archMaxVcpus(process.arch),
  }));
}
