/**
 * A simulated hypervisor for scale tests and benchmarks (`corral worker hypervisor --simulate`):
 * the QemuDriver interface with no QEMU. A "VM" boots at once with a fake pid; a process runs until
 * it is signalled (exit 128+signal), except `true` (exit 0) and `false` (exit 1), which end at once.
 * It writes nothing on the host. Everything it reports says it is simulated.
 */
import { EventEmitter } from 'node:events';
import { err } from '../../errors.ts';
import type { BootSpec, ProcessSpec } from '../../domain/ops.ts';
import type { QemuDriverEvents } from './qemu.ts';

const FAKE_PID_BASE = 10_000_000; // above any real pid_max, so it can never name a real process

export class SimDriver extends EventEmitter<QemuDriverEvents> {
  readonly simulated = true;
  private vms = new Map<string, { pid: number; procs: Set<string> }>();
  private next = 0;

  async boot(spec: BootSpec, signal: AbortSignal): Promise<{ pid: number; accel: 'tcg'; bootMs: number }> {
    signal.throwIfAborted();
    const have = this.vms.get(spec.sandboxId);
    if (have) return { pid: have.pid, accel: 'tcg', bootMs: 0 };
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
    const code = spec.args[0] === 'true' ? 0 : spec.args[0] === 'false' ? 1 : null;
    if (code !== null) setImmediate(() => this.exit(spec.sandboxId, spec.containerId, code));
    return { started: true, pid: 1 };
  }

  signal(sandboxId: string, containerId: string, sig: number): { delivered: boolean } {
    if (!this.vms.get(sandboxId)?.procs.has(containerId)) return { delivered: false };
    setImmediate(() => this.exit(sandboxId, containerId, 128 + sig));
    return { delivered: true };
  }

  /** Nothing to re-attach: simulated VMs live in this process only. */
  async adoptAll() {
    return { adopted: [], stopped: [], dead: [] };
  }
  async settled(_sandboxId: string): Promise<void> {}

  list() {
    return [...this.vms].map(([sandboxId, v]) => ({
      sandboxId,
      pid: v.pid,
      accel: 'tcg' as const,
      state: 'running' as const,
      startedAt: 0,
    }));
  }
  scanHost() {
    return [...this.vms].map(([sandboxId, v]) => ({ sandboxId, pid: v.pid }));
  }

  private exit(sandboxId: string, containerId: string, exitStatus: number) {
    const vm = this.vms.get(sandboxId);
    if (!vm?.procs.delete(containerId)) return;
    this.emit('exit', { kind: 'exit', sandboxId, containerId, exitStatus, exitedAt: Date.now() });
  }
}
