/**
 * A simulated hypervisor for scale tests and benchmarks (`corral worker hypervisor --simulate`):
 * the {@link Hypervisor} interface with no QEMU. A "VM" boots at once with a fake pid; a process runs until
 * it is signalled (exit 128+signal), except `true` (exit 0), `false` (exit 1) and `echo` (its arguments on
 * stdout, then exit 0), which end at once.
 * It writes nothing on the host. Everything it reports says it is simulated. Its VMs live in this process
 * only: there is nothing to adopt after a restart.
 */
import { EventEmitter } from 'node:events';
import { err } from '../../errors.ts';
import type { Adoption, BootSpec, ManagedVm, ProcessSpec, ScannedVm } from '../../domain/ops.ts';
import type { BootResult, Hypervisor, HypervisorEvents } from './hypervisor.ts';

const FAKE_PID_BASE = 10_000_000; // above any real pid_max, so it can never name a real process

export class SimDriver extends EventEmitter<HypervisorEvents> implements Hypervisor {
  readonly simulated = true;
  private vms = new Map<string, { pid: number; procs: Set<string> }>();
  private next = 0;

  async boot(spec: BootSpec, signal: AbortSignal): Promise<BootResult> {
    signal.throwIfAborted();
    if (this.vms.has(spec.sandboxId)) throw err.exists(`sandbox ${spec.sandboxId} has a VM already`);
    const pid = FAKE_PID_BASE + ++this.next;
    this.vms.set(spec.sandboxId, { pid, procs: new Set() });
    return { pid, accel: 'tcg', bootMs: 0 };
  }

  async stop(sandboxId: string): Promise<{ stopped: boolean }> {
    const vm = this.vms.get(sandboxId);
    if (!vm) return { stopped: false };
    this.vms.delete(sandboxId);
    for (const cid of vm.procs)
      this.emit('exit', { kind: 'exit', sandboxId, containerId: cid, exitStatus: 255, exitedAt: Date.now() });
    return { stopped: true };
  }

  async stopAll(): Promise<void> {
    for (const id of [...this.vms.keys()]) await this.stop(id);
  }

  async startProcess(spec: ProcessSpec): Promise<{ started: true; pid: number }> {
    const vm = this.vms.get(spec.sandboxId);
    if (!vm) throw err.notFound(`sandbox ${spec.sandboxId} has no VM`);
    if (vm.procs.has(spec.containerId))
      throw err.exists(`container ${spec.containerId} has a process in sandbox ${spec.sandboxId}`);
    vm.procs.add(spec.containerId);
    const [cmd, ...rest] = spec.args;
    const code = cmd === 'true' || cmd === 'echo' ? 0 : cmd === 'false' ? 1 : null;
    if (code !== null)
      setImmediate(() => {
        if (cmd === 'echo')
          this.emit('output', spec.sandboxId, spec.containerId, 1, new TextEncoder().encode(rest.join(' ') + '\n'));
        this.exit(spec.sandboxId, spec.containerId, code);
      });
    return { started: true, pid: 1 };
  }

  signal(sandboxId: string, containerId: string, sig: number): { delivered: boolean } {
    const vm = this.vms.get(sandboxId);
    if (!vm) throw err.notFound(`sandbox ${sandboxId} has no VM`);
    if (!Number.isInteger(sig) || sig < 1 || sig > 64) throw err.invalid(`signal ${sig}: want 1..64`);
    if (!vm.procs.has(containerId)) return { delivered: false };
    setImmediate(() => this.exit(sandboxId, containerId, 128 + sig));
    return { delivered: true };
  }

  async adoptAll(): Promise<Adoption> {
    return { adopted: [], stopped: [], dead: [] };
  }
  async settled(_sandboxId: string): Promise<void> {
    // Nothing to wait for: a simulated VM is never adopted, so it is settled as soon as it exists.
  }

  list(): ManagedVm[] {
    return [...this.vms].map(([sandboxId, v]) => ({
      sandboxId,
      pid: v.pid,
      accel: 'tcg',
      state: 'running',
      startedAt: 0,
      processes: [...v.procs],
    }));
  }
  scanHost(): ScannedVm[] {
    return [...this.vms].map(([sandboxId, v]) => ({ sandboxId, pid: v.pid }));
  }

  private exit(sandboxId: string, containerId: string, exitStatus: number) {
    const vm = this.vms.get(sandboxId);
    if (!vm?.procs.delete(containerId)) return;
    this.emit('exit', { kind: 'exit', sandboxId, containerId, exitStatus, exitedAt: Date.now() });
  }
}
