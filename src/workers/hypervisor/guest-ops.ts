/**
 * The workload half of QemuDriver (qemu.ts extends it): execs, stdin, terminals, and the cgroup control
 * of containers in running guests, through each VM's agent channel (docs/guest-agent.md, v3).
 */
import { EventEmitter } from 'node:events';
import { err } from '../../errors.ts';
import type { CgroupWrite, ConsoleSize, ContainerStats, ExecSpec, ProcessRef } from '../../domain/ops.ts';
import { keyOf } from './agent-frames.ts';
import { parseStats } from './guest-ctl.ts';
import type { HypervisorEvents } from './hypervisor.ts';
import { checkExec, checkLimits, execFrame } from './process-spec.ts';
import type { Vm } from './vm.ts';

export abstract class GuestOps extends EventEmitter<HypervisorEvents> {
  protected vms = new Map<string, Vm>();

  /** Resolves once the sandbox's VM (if any) is no longer being adopted. */
  async settled(sandboxId: string): Promise<void> {
    await this.vms.get(sandboxId)?.settled;
  }

  /** The sandbox's running VM: NotFound without one, FailedPrecondition while it is not running. */
  protected running(sandboxId: string, doing = 'start a process'): Vm {
    const vm = this.vms.get(sandboxId);
    if (!vm) throw err.notFound(`sandbox ${sandboxId} has no VM`);
    if (vm.state !== 'running' || !vm.agent)
      throw err.precondition(`cannot ${doing} in sandbox ${sandboxId}: VM is ${vm.state}`);
    return vm;
  }

  private async vmOf(sandboxId: string, doing: string): Promise<Vm> {
    await this.settled(sandboxId);
    return this.running(sandboxId, doing);
  }

  async exec(spec: ExecSpec): Promise<{ started: true; pid: number }> {
    checkExec(spec);
    const vm = await this.vmOf(spec.sandboxId, 'exec');
    const key = keyOf(spec);
    if (vm.procs.has(key))
      throw err.exists(`exec ${spec.execId} of container ${spec.containerId} runs in sandbox ${spec.sandboxId}`);
    return { started: true, pid: await vm.procs.start(key, execFrame(spec), spec.terminal) };
  }

  async writeStdin(ref: ProcessRef, data: Uint8Array): Promise<void> {
    const vm = await this.vmOf(ref.sandboxId, 'write stdin');
    await vm.procs.writeStdin(keyOf(ref), data);
  }

  async closeStdin(ref: ProcessRef): Promise<{ closed: boolean }> {
    const vm = this.vms.get(ref.sandboxId);
    await vm?.settled;
    if (vm?.state === 'running') await vm.procs.closeStdin(keyOf(ref));
    return { closed: true };
  }

  async resize(ref: ProcessRef, size: ConsoleSize): Promise<{ resized: boolean }> {
    const vm = await this.vmOf(ref.sandboxId, 'resize a terminal');
    if (![size.rows, size.cols].every((n) => Number.isInteger(n) && n > 0 && n <= 0xffff))
      throw err.invalid(`terminal size ${size.rows}x${size.cols}: rows and cols must be 1..65535`);
    return { resized: vm.procs.resize(keyOf(ref), size) };
  }

  async pause(sandboxId: string, containerId?: string): Promise<{ paused: boolean }> {
    await (await this.vmOf(sandboxId, 'pause')).ctl.call('freeze', containerId ?? '');
    return { paused: true };
  }

  async resume(sandboxId: string, containerId?: string): Promise<{ resumed: boolean }> {
    await (await this.vmOf(sandboxId, 'resume')).ctl.call('thaw', containerId ?? '');
    return { resumed: true };
  }

  async update(sandboxId: string, containerId: string, limits: CgroupWrite[]): Promise<{ updated: boolean }> {
    checkLimits(`update of container ${containerId}`, limits);
    await (await this.vmOf(sandboxId, 'update limits')).ctl.call('update', containerId, limits);
    return { updated: true };
  }

  async stats(sandboxId: string, containerId: string): Promise<ContainerStats> {
    if (!containerId) throw err.invalid('stats: containerId must not be empty');
    return parseStats(await (await this.vmOf(sandboxId, 'read stats')).ctl.call('stats', containerId));
  }

  setReading(sandboxId: string, on: boolean): void {
    const a = this.vms.get(sandboxId)?.agent;
    if (on) a?.resumeReading();
    else a?.pauseReading();
  }
}
