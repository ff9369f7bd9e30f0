/**
 * QemuDriver: the {@link Hypervisor} on real QEMU guests. It boots and stops them and runs container
 * processes in them through the guest agent (docs/guest-agent.md). No NATS here: the hypervisor worker
 * maps ops and events onto the bus.
 *
 * Beyond the interface's contract:
 * - Each VM is a `Vm` (vm.ts: its life and states), made by `launch` (launch.ts) or by `adopt` (adopt.ts);
 *   the driver keeps them by sandbox and lists them in its registry file (registry.ts).
 * - `adoptAll` takes over the QEMUs tagged with this driver's owner (with their virtiofsd); untagged QEMUs are
 *   left alone; this owner's virtiofsd daemons that no VM claims are ended.
 * - `release` lets go of every VM without stopping it, as a worker that dies would.
 * - `rekey` hands an idle pool VM (pool.ts) to a sandbox; the registry remembers the QEMU's own name for it.
 */
import { existsSync, statSync } from 'node:fs';
import { CorralError, err } from '../../errors.ts';
import type { Adoption, BootSpec, ManagedVm, ProcessSpec } from '../../domain/ops.ts';
import { adopt } from './adopt.ts';
import { procStart } from '../procfs.ts';
import { killOrphans, ownedBy, scanHost, vmFilesOf, type HostVm } from './host-scan.ts';
import { GuestOps } from './guest-ops.ts';
import type { BootResult, Hypervisor } from './hypervisor.ts';
import type { QemuDriverOptions } from './qemu-options.ts';
import { launch, type LaunchEnv } from './launch.ts';
import { keyOf } from './agent-frames.ts';
import { checkProcess, runFrame } from './process-spec.ts';
import { hostTscKhz, kvmPossible, validateBootSpec } from './qemu-args.ts';
import { VmRegistry, type RegistryEntry } from './registry.ts';
import { killSandboxDaemons, reapDaemons } from './virtiofsd.ts';
import { removeFiles, type Vm, type VmHooks } from './vm.ts';

export type { QemuDriverOptions } from './qemu-options.ts';

type Defaulted = Required<Omit<QemuDriverOptions, 'owner' | 'confirmExit' | 'registryPath' | 'onMalformed'>>;

export class QemuDriver extends GuestOps implements Hypervisor {
  private autoAccel: 'kvm' | 'tcg' | undefined;
  private o: Defaulted & Pick<QemuDriverOptions, 'owner' | 'confirmExit'>;
  private registry: VmRegistry;
  private hooks: VmHooks;
  private launchEnv: LaunchEnv;

  constructor(o: QemuDriverOptions = {}) {
    super();
    this.o = {
      qemuPath: 'qemu-system-x86_64',
      setprivPath: 'setpriv',
      bootTimeoutMs: 60_000,
      kvmProbeMs: 10_000,
      tscKhz: hostTscKhz() ?? 0,
      startTimeoutMs: 30_000,
      probeKvm: kvmPossible,
      adoptTimeoutMs: 20_000,
      ...o,
    };
    this.registry = new VmRegistry(o.registryPath);
    this.hooks = {
      events: this,
      confirmExit: this.o.confirmExit,
      forget: (vm) => {
        if (this.vms.get(vm.sandboxId) !== vm) return;
        this.vms.delete(vm.sandboxId);
        this.saveRegistry();
      },
      startTimeoutMs: this.o.startTimeoutMs,
      malformed: o.onMalformed,
    };
    this.launchEnv = {
      ...this.o,
      hooks: this.hooks,
      register: (vm) => {
        this.vms.set(vm.sandboxId, vm);
        this.saveRegistry();
      },
    };
  }

  /** What `auto` settled on after the first boot (undefined before). */
  get detectedAccel(): 'kvm' | 'tcg' | undefined {
    return this.autoAccel;
  }

  /** See {@link Hypervisor.boot}. `extraArgs` are appended to QEMU's command line (benchmarks, diagnostics). */
  async boot(spec: BootSpec, signal: AbortSignal, opts: { extraArgs?: string[] } = {}): Promise<BootResult> {
    validateBootSpec(spec);
    const had = this.vms.get(spec.sandboxId);
    // The sandbox claimed a pool VM (pool.ts): that VM is the boot's answer.
    if (had && had.name !== had.sandboxId && had.state === 'running')
      return { pid: had.pid, accel: had.accel, bootMs: 0, pooled: had.name };
    if (had?.adoptedAt !== undefined) {
      // A boot re-issued after a worker restart: the VM it started then was adopted, and is the answer.
      await had.settled;
      if (this.vms.get(spec.sandboxId) === had && had.state === 'running')
        return { pid: had.pid, accel: had.accel, bootMs: 0 };
      await had.gone;
    }
    if (this.vms.has(spec.sandboxId)) throw err.exists(`sandbox ${spec.sandboxId} has a VM already`);
    for (const f of [spec.kernel, spec.initrd])
      if (!existsSync(f)) throw err.notFound(`guest image file ${f} does not exist (run infra/guest/build.sh)`);
    if (!existsSync(spec.sharedDir) || !statSync(spec.sharedDir).isDirectory())
      throw err.notFound(`sharedDir ${spec.sharedDir} is not a directory`);
    const t0 = Date.now();
    const deadline = t0 + this.o.bootTimeoutMs;
    const req = { spec, signal, deadline, extraArgs: opts.extraArgs };
    const probe =
      spec.accel !== 'tcg' &&
      (spec.accel === 'kvm' || (this.autoAccel ?? (this.o.probeKvm() ? 'kvm' : 'tcg')) === 'kvm');
    if (probe) {
      // Under `auto`, any failure of the KVM attempt (QEMU dying, a silent guest) means: use TCG.
      const probeUntil = Date.now() + this.o.kvmProbeMs;
      const vm = await launch(this.launchEnv, { ...req, accel: 'kvm', probeUntil }).catch((e: unknown) => {
        // Aborted (a stop() during the attempt): no failure of KVM, pass it on as it is.
        if (signal.aborted || (e instanceof CorralError && e.code === 'Cancelled')) throw e;
        if (spec.accel === 'kvm') throw err.unavailable(`KVM is not usable here: ${(e as Error).message}`, e);
        return null;
      });
      if (vm) {
        if (spec.accel === 'auto') this.autoAccel = 'kvm';
        return { pid: vm.pid, accel: 'kvm', bootMs: Date.now() - t0 };
      }
      if (spec.accel === 'kvm')
        throw err.unavailable(
          `sandbox ${spec.sandboxId}: the KVM guest showed no sign of life within ${this.o.kvmProbeMs} ms`,
        );
    }
    if (spec.accel === 'auto') this.autoAccel = 'tcg';
    const vm = await launch(this.launchEnv, { ...req, accel: 'tcg' });
    if (!vm) throw err.internal('unreachable: TCG boot without a probe deadline reported silence');
    return { pid: vm.pid, accel: 'tcg', bootMs: Date.now() - t0 };
  }

  /**
   * See {@link Hypervisor.stop}: QMP quit, then SIGTERM and SIGKILL as the deadline (epoch ms) nears. An
   * unknown sandbox resolves `{stopped: false}`, unless an orphaned QEMU of that sandbox runs (found by
   * scanHost), which is killed.
   */
  async stop(sandboxId: string, deadlineMs = Date.now() + 10_000): Promise<{ stopped: boolean }> {
    const vm = this.vms.get(sandboxId);
    if (!vm) {
      const found = this.scanHost().filter((v) => v.sandboxId === sandboxId);
      const files = found.flatMap((v) => vmFilesOf(v.pid) ?? []); // read before the kill: its cmdline goes with it
      const stopped = await killOrphans(found, deadlineMs);
      const daemons = await killSandboxDaemons(sandboxId, this.o.owner, deadlineMs); // after QEMU, its client
      files.forEach(removeFiles);
      return { stopped: stopped || daemons };
    }
    if (vm.starting) {
      vm.cancel(err.cancelled(`sandbox ${sandboxId}: stopped while ${vm.state}`));
      // The boot or the adoption cleans up after itself; should it have got past its last check of the
      // cancel and made the VM running anyway, it is stopped here rather than waited on forever.
      await Promise.race([vm.gone, vm.settled ?? vm.gone]);
      if (vm.state !== 'running') {
        await vm.gone;
        return { stopped: true };
      }
    }
    await vm.destroy(Math.min(5000, Math.max(200, deadlineMs - Date.now() - 1500)));
    return { stopped: true };
  }

  async stopAll(deadlineMs = Date.now() + 10_000): Promise<void> {
    await Promise.all([...this.vms.keys()].map((id) => this.stop(id, deadlineMs)));
  }

  /** See {@link Hypervisor.startProcess}. */
  async startProcess(spec: ProcessSpec): Promise<{ started: true; pid: number }> {
    await this.settled(spec.sandboxId);
    const vm = this.running(spec.sandboxId);
    checkProcess(spec);
    if (vm.procs.has(spec.containerId))
      throw err.exists(`container ${spec.containerId} has a process in sandbox ${spec.sandboxId}`);
    return { started: true, pid: await vm.procs.start(spec.containerId, runFrame(spec), spec.terminal) };
  }

  signal(sandboxId: string, containerId: string, sig: number, all = false, execId?: string): { delivered: boolean } {
    const vm = this.vms.get(sandboxId);
    if (!vm) throw err.notFound(`sandbox ${sandboxId} has no VM`);
    if (!Number.isInteger(sig) || sig < 1 || sig > 64) throw err.invalid(`signal ${sig}: want 1..64`);
    return { delivered: vm.procs.signal(keyOf({ containerId, execId }), sig, all) };
  }

  list(): ManagedVm[] {
    return [...this.vms.values()].flatMap((v) => v.describe() ?? []);
  }

  /**
   * The Corral QEMUs on the host (by the `-name corral-<id>` marker) that this driver may treat as its own:
   * tagged with its owner, or untagged. With no owner set: all of them.
   */
  scanHost(): HostVm[] {
    return scanHost().filter(ownedBy(this.o.owner));
  }

  /**
   * See {@link Hypervisor.adoptAll}: the QEMUs tagged with this driver's owner that run on the host but not
   * under this driver (adopt.ts), and the VMs the registry lists whose QEMU is gone.
   */
  adoptAll(): Promise<Adoption> {
    const owner = this.o.owner;
    const listed = this.registry.load();
    // A claimed pool VM runs under its pool id (`-name`); the registry names the sandbox that took it.
    const all = scanHost().map((v) => claimedAs(v, listed));
    const found =
      owner === undefined ? [] : all.filter((v) => v.owner === owner && this.vms.get(v.sandboxId)?.pid !== v.pid);
    // VMs the registry lists whose QEMU is gone: they died while no driver watched.
    const dead = listed.filter(
      (e) =>
        !this.vms.has(e.sandboxId) &&
        !all.some((v) => v.sandboxId === e.sandboxId) &&
        procStart(e.pid)?.ticks !== e.ticks,
    );
    for (const e of dead) {
      removeFiles(e.paths);
      setImmediate(() =>
        this.emit('vmExit', { kind: 'vmExit', sandboxId: e.sandboxId, code: null, signal: null, at: Date.now() }),
      );
    }
    const env = {
      hooks: this.hooks,
      adoptTimeoutMs: this.o.adoptTimeoutMs,
      has: (id: string) => this.vms.has(id),
      register: (vm: Vm) => void this.vms.set(vm.sandboxId, vm),
    };
    const adoptions = found.map((h) => adopt(env, h, Date.now() + this.o.adoptTimeoutMs));
    this.saveRegistry();
    // Daemons whose QEMU never ran or died unwatched; the adopted VMs (registered by now) claim theirs.
    const claimed = (pid: number) => [...this.vms.values()].some((v) => v.daemon?.pid === pid);
    const reaped = owner === undefined ? Promise.resolve(false) : reapDaemons(owner, claimed, Date.now() + 10_000);
    return Promise.all([reaped.catch(() => false), ...adoptions]).then(([, ...rs]) => ({
      adopted: rs.flatMap((r) => ('running' in r ? [r] : [])),
      stopped: rs.flatMap((r) => ('reason' in r ? [r] : [])),
      dead: dead.map((e) => ({
        sandboxId: e.sandboxId,
        pid: e.pid,
        reason: 'its QEMU exited while no worker watched it',
      })),
    }));
  }

  /**
   * Make the running VM `from` (a pool VM, no processes) the VM of sandbox `to`, in memory and in the
   * registry (before the caller touches its share: a worker killed after this adopts it as `to`'s).
   */
  rekey(from: string, to: string): Vm {
    const vm = this.vms.get(from);
    if (!vm || vm.state !== 'running' || vm.procs.running().length > 0)
      throw err.precondition(`VM ${from} is not an idle running VM`);
    if (this.vms.has(to)) throw err.exists(`sandbox ${to} has a VM already`);
    this.vms.delete(from);
    vm.claim(to);
    this.vms.set(to, vm);
    this.saveRegistry();
    return vm;
  }

  /**
   * Let go of every VM without stopping it, as a worker that dies would: close the QMP and agent
   * connections and forget the VMs (booting ones fail their boot and are stopped). Processes still
   * starting fail with Unavailable; no exit is emitted. A driver with the same owner can adopt them.
   */
  release(): void {
    for (const vm of [...this.vms.values()]) {
      if (vm.starting) {
        vm.cancel(err.cancelled(`sandbox ${vm.sandboxId}: the driver let go while it was ${vm.state}`));
        continue;
      }
      vm.release();
      this.vms.delete(vm.sandboxId);
    }
  }

  private saveRegistry(): void {
    this.registry.save(
      [...this.vms.values()].flatMap((v) =>
        v.ticks && v.pid > 0
          ? [{ sandboxId: v.sandboxId, pid: v.pid, ticks: v.ticks, paths: v.paths, ...named(v) }]
          : [],
      ),
    );
  }
}

const named = (v: Vm) => (v.name === v.sandboxId ? {} : { name: v.name });

/** `v` under the sandbox the registry says claimed it (same pid, QEMU named by its pool id). */
function claimedAs(v: HostVm, listed: RegistryEntry[]): HostVm {
  const e = listed.find((x) => x.name === v.sandboxId && x.pid === v.pid);
  return e ? { ...v, sandboxId: e.sandboxId, name: v.sandboxId } : v;
}
