/**
 * The pool step of a sandbox's create (Kata's `[factory] vm_cache_number`, domain/pool.ts): with a cache
 * size set, and a boot that a pool VM can stand in for (no network plumbed into the VM, no rootless VMM
 * user), a `claimVm` step goes before the first bind into the share. Without one, the plan is as it was.
 */
import type { BootArgs, Step } from '../domain/ops.ts';
import type { VmClass } from '../domain/pool.ts';

/** The class a boot belongs to: its arguments without the sandbox, its share and its deadline. */
export function vmClassOf(b: BootArgs): VmClass {
  return {
    vcpus: b.vcpus,
    memoryMiB: b.memoryMiB,
    kernel: b.kernel,
    initrd: b.initrd,
    kernelParams: b.kernelParams,
    machineType: b.machineType,
    accel: b.accel,
    msize9p: b.msize9p,
    runDir: b.runDir,
    ...(b.virtioFs ? { virtioFs: b.virtioFs } : {}),
  };
}

/**
 * `steps` with a claim inserted before the first `bind` (what puts the rootfs into the share), when
 * `keep` > 0 and no step plumbs a network or makes a VMM user.
 */
export function withPoolClaim(steps: Step[], keep: number): Step[] {
  const boot = steps.find((s) => s.kind === 'boot');
  const first = steps.findIndex((s) => s.kind === 'bind');
  const poolable = !steps.some((s) => s.kind === 'createUser' || s.kind === 'setupNetwork' || s.kind === 'createNetns');
  if (keep <= 0 || !boot || boot.kind !== 'boot' || first < 0 || !poolable) return steps;
  const claim: Step = {
    phase: 'booting',
    kind: 'claimVm',
    args: { sandboxId: boot.args.sandboxId, sharedDir: boot.args.sharedDir, vmClass: vmClassOf(boot.args), keep },
  };
  return [...steps.slice(0, first), claim, ...steps.slice(first)];
}
