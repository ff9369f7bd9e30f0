/**
 * The VMs the hypervisor worker reports (domain/ops.ts `scan`, its start): Corral QEMUs on the host, those
 * it manages, and what it took over or lost when it started after a previous worker died.
 */
/** A Corral QEMU on the host (found by its `-name corral-<id>` marker), as `scan` reports it under `vms`. */
export interface ScannedVm {
  sandboxId: string;
  pid: number;
  /** The node whose hypervisor worker started it (its `CORRAL_OWNER` tag); absent on untagged QEMUs. */
  owner?: string;
}

/** A VM the hypervisor worker runs, as `scan` reports it under `managed`. */
export interface ManagedVm {
  sandboxId: string;
  /** The VMM's pid on the host. */
  pid: number;
  accel: 'kvm' | 'tcg';
  /** `adopting`: taken over from an earlier worker, not yet confirmed through QMP and the guest agent. */
  state: 'booting' | 'adopting' | 'running' | 'stopping';
  /** Epoch ms the VMM process started. */
  startedAt: number;
  /** Set on a VM taken over from an earlier worker: when it was adopted (0 while adopting). */
  adoptedAt?: number;
  /** The containers whose process runs in the guest. */
  processes: string[];
}

/** A VM the worker took over when it started: its guest's running containers, and those that exited meanwhile. */
export interface AdoptedVm {
  sandboxId: string;
  pid: number;
  accel: 'kvm' | 'tcg';
  /** The processes that run: `containerId` for an init, `containerId/execId` for an exec. */
  running: string[];
  /** Exits the guest kept while no worker listened (each also reported as an `exit` event). */
  exited: { containerId: string; execId?: string; status: number }[];
  /** What the re-attached agent channel skipped before the guest's STATE (see agent-channel.ts). */
  resync: { discarded: number; frames: number };
}

/** A VM the worker could not take over (and stopped), or found gone; each was reported as a `vmExit` event. */
export interface LostVm {
  sandboxId: string;
  pid: number;
  reason: string;
}

/** What the hypervisor worker re-attached to when it started (a restart after the previous worker died). */
export interface Adoption {
  adopted: AdoptedVm[];
  /** VMs that were running but could not be adopted: stopped. */
  stopped: LostVm[];
  /** VMs the registry listed whose QEMU had exited while no worker watched. */
  dead: LostVm[];
}
