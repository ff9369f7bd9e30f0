/**
 * The span of one VM boot in the hypervisor worker (`vm.boot`, inside the `worker.hypervisor.boot`
 * server span): the sandbox, then the VMM's pid, its accelerator and how long the boot took. The guest
 * agent's READY is an event on it (`guest.ready`, launch.ts), one per QEMU launch that got one (a KVM
 * probe that falls back to TCG launches twice).
 */
import type { BootSpec } from '../../domain/ops.ts';
import { inSpan, tracing } from '../../util/trace.ts';
import type { BootResult } from './hypervisor.ts';

export function bootSpan(spec: BootSpec, boot: () => Promise<BootResult>): Promise<BootResult> {
  if (!tracing()) return boot();
  return inSpan(
    'vm.boot',
    async (span) => {
      const r = await boot();
      span.setAttributes({ 'corral.vm.pid': r.pid, 'corral.vm.accel': r.accel, 'corral.vm.boot_ms': r.bootMs });
      return r;
    },
    { attributes: { 'corral.sandbox_id': spec.sandboxId } },
  );
}
