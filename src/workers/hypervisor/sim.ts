/**
 * A simulated hypervisor for scale tests and benchmarks (`corral worker hypervisor --simulate`):
 * the {@link Hypervisor} interface with no QEMU. A "VM" boots at once with a fake pid; a process (a
 * container's init or an exec) runs until it is signalled (exit 128+signal), except `true` (exit 0),
 * `false` (exit 1) and `echo` (its arguments on stdout, then exit 0), which end at once, and `cat`, which
 * copies its stdin to stdout and exits 0 when its stdin is closed. Pause, resume and update only record;
 * stats report the recorded limits and zero use.
 * It writes nothing on the host but, given `registryPath`, the list of its VMs. Everything it reports says
 * it is simulated. Its VMs live in this process only: there is nothing to adopt after a restart, and its
 * successor reports each VM the list names as a VM exit (as QemuDriver does for a QEMU that died while no
 * worker watched it), so the agent tears those sandboxes down instead of signalling a VM that is gone.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { err } from '../../errors.ts';
import type {
  Adoption,
  BootSpec,
  CgroupWrite,
  ContainerStats,
  ExecSpec,
  ManagedVm,
  ProcessRef,
  ProcessSpec,
  ScannedVm,
} from '../../domain/ops.ts';
import { keyOf } from './agent-frames.ts';
import type { BootResult, ExitEvent, Hypervisor, HypervisorEvents } from './hypervisor.ts';

const FAKE_PID_BASE = 10_000_000; // above any real pid_max, so it can never name a real process

const exitOf = ({ sandboxId, containerId, execId }: ProcessRef, exitStatus: number): ExitEvent => ({
  kind: 'exit',
  sandboxId,
  containerId,
  ...(execId === undefined ? {} : { execId }),
  exitStatus,
  exitedAt: Date.now(),
});

interface SimProc {
  ref: ProcessRef;
  cat: boolean;
}
interface SimVm {
  pid: number;
  procs: Map<string, SimProc>;
  limits: Map<string, Map<string, string>>;
  paused: Set<string>;
}

export class SimDriver extends EventEmitter<HypervisorEvents> implements Hypervisor {
  readonly simulated = true;
  private vms = new Map<string, SimVm>();
  private next = 0;

  constructor(private readonly o: { registryPath?: string } = {}) {
    super();
  }

  async boot(spec: BootSpec, signal: AbortSignal): Promise<BootResult> {
    signal.throwIfAborted();
    if (this.vms.has(spec.sandboxId)) throw err.exists(`sandbox ${spec.sandboxId} has a VM already`);
    const pid = FAKE_PID_BASE + ++this.next;
    this.vms.set(spec.sandboxId, { pid, procs: new Map(), limits: new Map(), paused: new Set() });
    await this.save();
    return { pid, accel: 'tcg', bootMs: 0 };
  }

  async stop(sandboxId: string): Promise<{ stopped: boolean }> {
    const vm = this.vms.get(sandboxId);
    if (!vm) return { stopped: false };
    this.vms.delete(sandboxId);
    await this.save();
    for (const p of vm.procs.values()) this.emit('exit', exitOf(p.ref, 255));
    return { stopped: true };
  }

  async stopAll(): Promise<void> {
    for (const id of [...this.vms.keys()]) await this.stop(id);
  }

  private vm(sandboxId: string): SimVm {
    const vm = this.vms.get(sandboxId);
    if (!vm) throw err.notFound(`sandbox ${sandboxId} has no VM`);
    return vm;
  }

  private run(ref: ProcessRef, args: string[]): void {
    const vm = this.vm(ref.sandboxId);
    const key = keyOf(ref);
    if (vm.procs.has(key)) throw err.exists(`process ${key} runs in sandbox ${ref.sandboxId}`);
    const [cmd, ...rest] = args;
    vm.procs.set(key, { ref: { ...ref }, cat: cmd === 'cat' });
    const code = cmd === 'true' || cmd === 'echo' ? 0 : cmd === 'false' ? 1 : null;
    if (code !== null)
      setImmediate(() => {
        if (cmd === 'echo') this.out(ref, new TextEncoder().encode(rest.join(' ') + '\n'));
        this.exit(ref, code);
      });
  }

  private out(ref: ProcessRef, data: Uint8Array): void {
    this.emit('output', ref.sandboxId, ref.containerId, 1, data, ref.execId);
  }

  async startProcess(spec: ProcessSpec): Promise<{ started: true; pid: number }> {
    this.run({ sandboxId: spec.sandboxId, containerId: spec.containerId }, spec.args);
    if (spec.limits?.length) await this.update(spec.sandboxId, spec.containerId, spec.limits);
    return { started: true, pid: 1 };
  }

  async exec(spec: ExecSpec): Promise<{ started: true; pid: number }> {
    const vm = this.vm(spec.sandboxId);
    if (!vm.procs.has(spec.containerId)) throw err.notFound(`container ${spec.containerId} is not running`);
    this.run({ sandboxId: spec.sandboxId, containerId: spec.containerId, execId: spec.execId }, spec.args);
    return { started: true, pid: 2 };
  }

  signal(sandboxId: string, containerId: string, sig: number, _all = false, execId?: string): { delivered: boolean } {
    const vm = this.vm(sandboxId);
    if (!Number.isInteger(sig) || sig < 1 || sig > 64) throw err.invalid(`signal ${sig}: want 1..64`);
    const ref = { sandboxId, containerId, execId };
    if (!vm.procs.has(keyOf(ref))) return { delivered: false };
    setImmediate(() => this.exit(ref, 128 + sig));
    return { delivered: true };
  }

  async writeStdin(ref: ProcessRef, data: Uint8Array): Promise<void> {
    const p = this.vm(ref.sandboxId).procs.get(keyOf(ref));
    if (!p) throw err.precondition(`process ${keyOf(ref)} is not running in sandbox ${ref.sandboxId}`);
    if (p.cat) this.out(p.ref, new Uint8Array(data));
  }

  async closeStdin(ref: ProcessRef): Promise<{ closed: boolean }> {
    const p = this.vms.get(ref.sandboxId)?.procs.get(keyOf(ref));
    if (p?.cat) setImmediate(() => this.exit(p.ref, 0));
    return { closed: true };
  }

  async resize(ref: ProcessRef): Promise<{ resized: boolean }> {
    if (!this.vm(ref.sandboxId).procs.has(keyOf(ref))) throw err.precondition(`process ${keyOf(ref)} is not running`);
    return { resized: true };
  }

  async pause(sandboxId: string, containerId?: string): Promise<{ paused: boolean }> {
    this.vm(sandboxId).paused.add(containerId ?? '');
    return { paused: true };
  }

  async resume(sandboxId: string, containerId?: string): Promise<{ resumed: boolean }> {
    this.vm(sandboxId).paused.delete(containerId ?? '');
    return { resumed: true };
  }

  async update(sandboxId: string, containerId: string, limits: CgroupWrite[]): Promise<{ updated: boolean }> {
    const vm = this.vm(sandboxId);
    const l = vm.limits.get(containerId) ?? new Map<string, string>();
    for (const w of limits) l.set(w.file, w.value);
    vm.limits.set(containerId, l);
    return { updated: true };
  }

  async stats(sandboxId: string, containerId: string): Promise<ContainerStats> {
    const vm = this.vm(sandboxId);
    if (!vm.procs.has(containerId)) throw err.notFound(`container ${containerId} has no process`);
    const l = vm.limits.get(containerId);
    const num = (f: string) => (l?.get(f) && l.get(f) !== 'max' ? Number(l.get(f)) : null);
    return {
      cpu: { usageUsec: 0, userUsec: 0, systemUsec: 0, nrPeriods: 0, nrThrottled: 0 },
      memory: { usage: 0, limit: num('memory.max'), anon: 0, file: 0, oomKills: 0 },
      pids: {
        current: [...vm.procs.values()].filter((p) => p.ref.containerId === containerId).length,
        limit: num('pids.max'),
      },
    };
  }

  setReading(): void {
    // Simulated output is emitted at once: nothing to hold back.
  }

  /** Nothing to adopt; the VMs an earlier worker's list names died with it: each is reported as a VM exit. */
  async adoptAll(): Promise<Adoption> {
    const dead = this.load().filter((v) => !this.vms.has(v.sandboxId));
    await this.save();
    for (const v of dead)
      setImmediate(() =>
        this.emit('vmExit', { kind: 'vmExit', sandboxId: v.sandboxId, code: null, signal: null, at: Date.now() }),
      );
    return {
      adopted: [],
      stopped: [],
      dead: dead.map((v) => ({ ...v, reason: 'a simulated VM ends with its worker process' })),
    };
  }

  /** The last write scheduled, and the next one while it has not begun (every change until then joins it). */
  private lastWrite: Promise<void> = Promise.resolve();
  private nextWrite?: Promise<void>;

  /**
   * The list of this driver's VMs, rewritten atomically whenever the set changes (best effort): resolves once
   * a write that began after the change is done. Changes that come while a write is under way share the next
   * one, and the writes never block the event loop (a rename over the old file waits for its data on ext4).
   */
  private save(): Promise<void> {
    const path = this.o.registryPath;
    if (!path) return Promise.resolve();
    const write = async () => {
      this.nextWrite = undefined; // begun: a change from now on needs a write after this one
      const list = [...this.vms].map(([sandboxId, v]) => ({ sandboxId, pid: v.pid }));
      try {
        await mkdir(dirname(path), { recursive: true });
        await writeFile(`${path}.tmp`, JSON.stringify(list) + '\n', { mode: 0o600 });
        await rename(`${path}.tmp`, path);
      } catch {
        /* without it, the VMs of a worker that dies go unreported: the agent finds them gone when it signals */
      }
    };
    return (this.nextWrite ??= this.lastWrite = this.lastWrite.then(write));
  }

  private load(): { sandboxId: string; pid: number }[] {
    if (!this.o.registryPath) return [];
    try {
      const v: unknown = JSON.parse(readFileSync(this.o.registryPath, 'utf8'));
      const ok = (e: unknown): e is { sandboxId: string; pid: number } =>
        typeof e === 'object' && e !== null && 'sandboxId' in e && typeof e.sandboxId === 'string' && 'pid' in e;
      return Array.isArray(v) ? v.filter(ok) : [];
    } catch {
      return [];
    }
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
      processes: [...v.procs.keys()],
    }));
  }
  scanHost(): ScannedVm[] {
    return [...this.vms].map(([sandboxId, v]) => ({ sandboxId, pid: v.pid }));
  }

  private exit(ref: ProcessRef, exitStatus: number) {
    const vm = this.vms.get(ref.sandboxId);
    if (!vm?.procs.delete(keyOf(ref))) return;
    this.emit('exit', exitOf(ref, exitStatus));
  }
}
