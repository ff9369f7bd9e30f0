/** The pool's ops on the hypervisor worker (domain/pool.ts), and what `scan` reports of pool VMs. */
import { err } from '../../errors.ts';
import type { ManagedVm, OpHandlers, ScannedVm } from '../../domain/ops.ts';
import { isPoolId, type VmClass } from '../../domain/pool.ts';
import type { VmPool } from './pool.ts';

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

/** `claim` and `pool`; without a pool (simulated VMs) a claim finds nothing and the list is empty. */
export function poolHandlers(pool: VmPool | undefined): Pick<OpHandlers<'hypervisor'>, 'claim' | 'keep' | 'pool'> {
  return {
    claim: async (req) => {
      const { sandboxId, sharedDir, opId, deadlineMs } = req;
      if (typeof sandboxId !== 'string' || typeof sharedDir !== 'string' || !sharedDir.startsWith('/'))
        throw err.invalid('claim: want sandboxId and an absolute sharedDir');
      const [vmClass, keep] = parseClass('claim', req);
      if (!pool) return { claimed: false };
      return pool.claim({ sandboxId, sharedDir, vmClass, keep, opId: String(opId), deadlineMs: Number(deadlineMs) });
    },
    keep: async (req) => {
      const [vmClass, keep] = parseClass('keep', req);
      return pool ? pool.keep(vmClass, keep) : { keep: 0 };
    },
    pool: async () => pool?.view() ?? { classes: [], vms: [] },
  };
}

function parseClass(op: string, req: Record<string, unknown>): [VmClass, number] {
  const { vmClass, keep } = req;
  if (!isRecord(vmClass) || typeof keep !== 'number' || !Number.isFinite(keep))
    throw err.invalid(`${op}: want vmClass and a numeric keep`);
  const c = vmClass as unknown as VmClass;
  for (const k of ['vcpus', 'memoryMiB', 'msize9p'] as const)
    if (typeof c[k] !== 'number') throw err.invalid(`${op}: vmClass.${k} must be a number`);
  for (const k of ['kernel', 'initrd', 'kernelParams', 'machineType', 'accel', 'runDir'] as const)
    if (typeof c[k] !== 'string') throw err.invalid(`${op}: vmClass.${k} must be a string`);
  return [c, keep];
}

/**
 * The host's Corral QEMUs as `scan` reports them: a claimed pool VM under its sandbox (its QEMU is named by
 * its pool id), an idle one not at all (it is no sandbox's: reconciliation must not take it for an orphan).
 */
export function scannedAs(found: ScannedVm[], managed: ManagedVm[]): ScannedVm[] {
  return found.flatMap((v) => {
    if (!isPoolId(v.sandboxId)) return [v];
    const m = managed.find((x) => x.pid === v.pid);
    return m && !isPoolId(m.sandboxId) ? [{ ...v, sandboxId: m.sandboxId }] : [];
  });
}
