/** QemuDriver's options (qemu.ts). */
import type { ExitEvent } from './hypervisor.ts';

export interface QemuDriverOptions {
  /** @default 'qemu-system-x86_64' */
  qemuPath?: string;
  /** Used to drop to the VMM user when `spec.user` is set. @default 'setpriv' */
  setprivPath?: string;
  /** Bound on one boot even if the caller's signal never fires. @default 60_000 */
  bootTimeoutMs?: number;
  /** How long a KVM guest may take to say READY before `auto` falls back to TCG (`kvm` fails). @default 10_000 */
  kvmProbeMs?: number;
  /** Guest TSC in kHz passed as `tsc_early_khz` under TCG. @default the host's, from /proc/cpuinfo */
  tscKhz?: number;
  /** How long the guest may take to report a started (or failed) process. @default 30_000 */
  startTimeoutMs?: number;
  /** Whether `auto` should try KVM at all. @default kvmPossible (VT-x/AMD-V flag and a usable /dev/kvm) */
  probeKvm?: () => boolean;
  /**
   * Owner tag (the node name) put into each QEMU's environment as CORRAL_OWNER. `scanHost` and `stop`
   * then never report or touch a QEMU tagged for another owner (several nodes may share a host).
   */
  owner?: string;
  /**
   * Called after each guest-reported `exit` was emitted; the guest forgets the exit (ACK) once it resolves.
   * Until then the guest keeps it and reports it again to a driver that adopts the VM. The hypervisor
   * worker passes a NATS flush, so an exit is forgotten only once the bus has it. @default ACK at once
   */
  confirmExit?: (e: ExitEvent) => Promise<unknown>;
  /** How long adopting one VM may take (QMP, then the guest agent's STATE). @default 20_000 */
  adoptTimeoutMs?: number;
  /**
   * A file where the driver keeps the list of its VMs (sandbox, pid, start time, files). `adoptAll` reads
   * it to find the VMs that died while no driver watched them: they are reported as `vmExit`.
   */
  registryPath?: string;
  /** Told of each guest frame dropped as malformed (the channel resynchronises itself). */
  onMalformed?: (sandboxId: string, reason: string) => void;
}
