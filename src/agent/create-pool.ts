/**
 * A sandbox's boot arguments from its runtime config, and the pool step of its create (Kata's `[factory]
 * vm_cache_number`, domain/pool.ts): with a cache size set, and a boot that a pool VM can stand in for (no
 * network plumbed into the VM, no rootless VMM user), a `claimVm` step goes before the first bind into the
 * share. Without one, the plan is as it was.
 */
import type { BootArgs, Step } from '../domain/ops.ts';
import type { VmClass } from '../domain/pool.ts';
import { kernelCmdline, type RuntimeConfig } from '../kata/index.ts';
import { paths, type Settings } from './settings.ts';

/** The boot step's arguments for sandbox `sid` of `vcpus` and `memoryMiB` (the sizing is the caller's). */
export function bootArgsOf(s: Settings, rc: RuntimeConfig, sid: string, vcpus: number, memoryMiB: number): BootArgs {
  const hv = rc.hypervisor;
  const accels = hv.machineAccelerators;
  return {
    sandboxId: sid,
    vcpus,
    memoryMiB,
    kernel: hv.kernel,
    initrd: hv.initrd,
    kernelParams: kernelCmdline(hv.kernelParams),
    machineType: hv.machineType,
    accel: /\btcg\b/.test(accels) ? 'tcg' : /\bkvm\b/.test(accels) ? 'kvm' : 'auto',
    sharedDir: paths.sharedDir(s, sid),
    msize9p: hv.msize9p,
    runDir: paths.vmDir(s),
    ...(hv.sharedFs === 'virtio-fs'
      ? {
          virtioFs: {
            daemon: hv.virtioFsDaemon,
            cache: hv.virtioFsCache,
            extraArgs: [...hv.virtioFsExtraArgs],
            queueSize: hv.virtioFsQueueSize,
          },
        }
      : {}),
    bootTimeoutMs: Math.max(10, rc.agent.dialTimeout || 120) * 1000,
  };
}

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
