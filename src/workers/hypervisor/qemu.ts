/**
 * QemuDriver: boots and stops QEMU guests and runs container processes in them through the guest
 * agent (docs/guest-agent.md). No NATS here: the hypervisor worker maps ops and events onto the bus.
 *
 * Contract:
 * - `boot` resolves once the guest agent said READY; any failure (abort, deadline, QEMU exiting early)
 *   kills QEMU, waits until it is reaped, removes its sockets and logs, and throws a CorralError.
 * - Every process whose `startProcess` resolved gets exactly one `exit` event: from the guest, or with
 *   status 255 when its VM went away first (stop, crash). `exit` is emitted on a later macrotask than
 *   the `startProcess` resolution, so a caller can reply to the start before publishing the exit.
 * - `vmExit` is emitted only when QEMU dies without being asked to (`stop` and failed boots do not emit it),
 *   or when a VM left by an earlier worker cannot be adopted and is stopped.
 * - `adoptAll` takes over the QEMUs tagged with this driver's owner that an earlier driver (a worker that
 *   died) left running: they become VMs of this driver with the processes their guest still runs, and
 *   exits that happened meanwhile are emitted. `release` lets go of every VM without stopping it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  chownSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname } from 'node:path';
import { CorralError, ensureError, err } from '../../errors.ts';
import type { BootSpec, ProcessSpec, WorkerEvent } from '../../domain/ops.ts';
import {
  AgentChannel,
  MAX_FRAME,
  encodeAck,
  encodeList,
  encodePing,
  encodeRun,
  encodeSignal,
  type AgentMsg,
  type GuestContainer,
} from './agent-channel.ts';
import { abortError, bootError, fmtExit, tailOf, type FailedVm } from './boot-error.ts';
import { OWNER_ENV, kill, killOrphans, ownedBy, procStart, scanHost, watchPid, type HostVm } from './host-scan.ts';
import { Qmp } from './qmp.ts';
import {
  hostTscKhz,
  kvmPossible,
  parseQemuCmdline,
  qemuArgs,
  setprivArgs,
  validateBootSpec,
  vmPaths,
  type VmPaths,
} from './qemu-args.ts';

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
}

/** One line of the registry: enough to tell a VM's QEMU is gone and to remove its files. */
interface RegistryEntry {
  sandboxId: string;
  pid: number;
  ticks: string;
  paths: VmPaths;
}

export type ExitEvent = Extract<WorkerEvent, { kind: 'exit' }>;
export type VmExitEvent = Extract<WorkerEvent, { kind: 'vmExit' }>;
export interface QemuDriverEvents {
  output: [sandboxId: string, containerId: string, fd: 1 | 2, data: Uint8Array];
  exit: [ExitEvent];
  vmExit: [VmExitEvent];
}

export interface VmInfo {
  sandboxId: string;
  pid: number;
  accel: 'kvm' | 'tcg';
  state: 'booting' | 'adopting' | 'running' | 'stopping';
  startedAt: number;
  /** Set on a VM taken over from an earlier driver: when it was adopted (0 while adopting). */
  adoptedAt?: number;
}

/** A VM `adoptAll` took over: its guest's running containers, and those that exited while nobody listened. */
export interface AdoptedVm {
  sandboxId: string;
  pid: number;
  accel: 'kvm' | 'tcg';
  running: string[];
  exited: { containerId: string; status: number }[];
  resync: { discarded: number; frames: number };
}
/** A VM `adoptAll` could not take over, and stopped; or (in `dead`) found gone. Each was emitted as `vmExit`. */
export interface StoppedVm {
  sandboxId: string;
  pid: number;
  reason: string;
}
export interface Adoption {
  adopted: AdoptedVm[];
  stopped: StoppedVm[];
  dead: StoppedVm[];
}

interface Proc {
  state: 'starting' | 'running';
  start?: { resolve: (pid: number) => void; reject: (e: CorralError) => void; timer: NodeJS.Timeout };
}
interface Vm extends FailedVm {
  info: VmInfo;
  /** Absent for an adopted VM: not our child, its end is noticed through /proc (no exit code). */
  child?: ChildProcess;
  paths: VmPaths;
  exited: Promise<void>;
  qmp?: Qmp;
  agent?: AgentChannel;
  ready: boolean;
  abort: AbortController;
  procs: Map<string, Proc>;
  orphans: Set<string>;
  destroying?: Promise<void>;
  /** Resolves when `destroy` has finished: process reaped, files removed, VM forgotten. */
  gone: Promise<void>;
  markGone: () => void;
  /** Adopted VMs: resolves once the adoption has succeeded or the VM was stopped. */
  settled?: Promise<void>;
  /** stop() was asked while adopting: no vmExit. */
  stopRequested?: boolean;
  /** Let go by `release`: this driver no longer acts on it. */
  released?: boolean;
  unwatch?: () => void;
  /** The QEMU process's start time (clock ticks since boot): with the pid, its identity in the registry. */
  ticks?: string;
}

const EXIT_UNKNOWN = 255;
const ERRNO_CODE: Record<number, (m: string) => CorralError> = {
  2: err.notFound,
  17: err.exists,
  22: err.invalid,
  11: err.exhausted,
};

export class QemuDriver extends EventEmitter<QemuDriverEvents> {
  private vms = new Map<string, Vm>();
  private autoAccel: 'kvm' | 'tcg' | undefined;
  private o: Required<Omit<QemuDriverOptions, 'owner' | 'confirmExit' | 'registryPath'>> &
    Pick<QemuDriverOptions, 'owner' | 'confirmExit' | 'registryPath'>;

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
  }

  /** What `auto` settled on after the first boot (undefined before). */
  get detectedAccel(): 'kvm' | 'tcg' | undefined {
    return this.autoAccel;
  }

  /** Spawn QEMU and wait for the guest agent's READY. `extraArgs` are appended to QEMU's command line. */
  async boot(
    spec: BootSpec,
    signal: AbortSignal,
    opts: { extraArgs?: string[] } = {},
  ): Promise<{ pid: number; accel: 'kvm' | 'tcg'; bootMs: number }> {
    validateBootSpec(spec);
    const had = this.vms.get(spec.sandboxId);
    if (had?.info.adoptedAt !== undefined) {
      // A boot re-issued after a worker restart: the VM it started then was adopted, and is the answer.
      await had.settled;
      if (this.vms.get(spec.sandboxId) === had && had.info.state === 'running')
        return { pid: had.info.pid, accel: had.info.accel, bootMs: 0 };
      await had.gone;
    }
    if (this.vms.has(spec.sandboxId)) throw err.exists(`sandbox ${spec.sandboxId} has a VM already`);
    for (const f of [spec.kernel, spec.initrd])
      if (!existsSync(f)) throw err.notFound(`guest image file ${f} does not exist (run infra/guest/build.sh)`);
    if (!existsSync(spec.sharedDir) || !statSync(spec.sharedDir).isDirectory())
      throw err.notFound(`sharedDir ${spec.sharedDir} is not a directory`);
    const t0 = Date.now();
    const deadline = t0 + this.o.bootTimeoutMs;
    const probe =
      spec.accel !== 'tcg' &&
      (spec.accel === 'kvm' || (this.autoAccel ?? (this.o.probeKvm() ? 'kvm' : 'tcg')) === 'kvm');
    if (probe) {
      // Under `auto`, any failure of the KVM attempt (QEMU dying, a silent guest) means: use TCG.
      const vm = await this.launch(spec, 'kvm', signal, deadline, opts.extraArgs, Date.now() + this.o.kvmProbeMs).catch(
        (e: unknown) => {
          if (signal.aborted || (e instanceof CorralError && e.code === 'Cancelled')) throw e; // stop() during the attempt
          if (spec.accel === 'kvm') throw err.unavailable(`KVM is not usable here: ${(e as Error).message}`, e);
          return null;
        },
      );
      if (vm) {
        if (spec.accel === 'auto') this.autoAccel = 'kvm';
        return { pid: vm.info.pid, accel: 'kvm', bootMs: Date.now() - t0 };
      }
      if (spec.accel === 'kvm')
        throw err.unavailable(
          `sandbox ${spec.sandboxId}: the KVM guest showed no sign of life within ${this.o.kvmProbeMs} ms`,
        );
    }
    if (spec.accel === 'auto') this.autoAccel = 'tcg';
    const vm = await this.launch(spec, 'tcg', signal, deadline, opts.extraArgs);
    if (!vm) throw err.internal('unreachable: TCG boot without a probe deadline reported silence');
    return { pid: vm.info.pid, accel: 'tcg', bootMs: Date.now() - t0 };
  }

  /** One QEMU launch; null when the guest stayed silent past `probeUntil` (already cleaned up). */
  private async launch(
    spec: BootSpec,
    accel: 'kvm' | 'tcg',
    signal: AbortSignal,
    deadline: number,
    extra?: string[],
    probeUntil?: number,
  ): Promise<Vm | null> {
    if (signal.aborted) throw abortError(signal, spec.sandboxId, '');
    const paths = vmPaths(spec.runDir, spec.sandboxId);
    if (!existsSync(spec.runDir)) {
      mkdirSync(spec.runDir, { recursive: true, mode: 0o700 });
      if (spec.user) chownSync(spec.runDir, spec.user.uid, spec.user.gid);
    }
    removeFiles(paths);
    const args = qemuArgs(spec, { accel, paths, tscKhz: this.o.tscKhz || undefined, extra });
    const [cmd, argv] = spec.user
      ? [this.o.setprivPath, [...setprivArgs(spec.user), this.o.qemuPath, ...args]]
      : [this.o.qemuPath, args];
    const errFd = openSync(paths.stderr, 'w', 0o600);
    let child: ChildProcess;
    try {
      // Own session: a worker restart or a ^C in its terminal does not take the VMs down (scanHost finds them).
      const env: NodeJS.ProcessEnv = {
        PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
        ...(this.o.owner ? { [OWNER_ENV]: this.o.owner } : {}),
      };
      child = spawn(cmd, argv, { stdio: ['ignore', 'ignore', errFd], detached: true, env });
    } catch (e) {
      removeFiles(paths);
      throw err.internal(`sandbox ${spec.sandboxId}: cannot spawn ${cmd}: ${(e as Error).message}`, e);
    } finally {
      closeSync(errFd);
    }
    let markGone = () => {};
    const gone = new Promise<void>((r) => {
      markGone = r;
    });
    const vm: Vm = {
      gone,
      markGone,
      info: { sandboxId: spec.sandboxId, pid: child.pid ?? -1, accel, state: 'booting', startedAt: Date.now() },
      child,
      paths,
      ready: false,
      abort: new AbortController(),
      procs: new Map(),
      orphans: new Set(),
      exited: new Promise<void>((resolve) => {
        child.once('exit', (code, sig) => {
          vm.exitInfo = { code, signal: sig };
          resolve();
        });
        child.once('error', (e) => {
          if (child.pid === undefined) {
            vm.exitInfo = { code: null, signal: null };
            vm.spawnError = e;
            resolve();
          }
        });
      }),
    };
    child.unref();
    vm.ticks = child.pid ? procStart(child.pid)?.ticks : undefined;
    this.vms.set(spec.sandboxId, vm);
    this.saveRegistry();
    void vm.exited.then(() => this.onVmExit(vm));

    const both = AbortSignal.any([signal, vm.abort.signal]);
    const conn = { deadlineMs: deadline, signal: both, alive: () => !vm.exitInfo };
    try {
      vm.agent = await AgentChannel.connect(paths.agent, conn);
      vm.agent.on('msg', (m) => this.onAgent(vm, m));
      vm.agent.on('close', () => this.failStarts(vm, 'the agent channel closed'));
      vm.agent.send(encodePing(1));
      vm.qmp = await Qmp.connect(paths.qmp, conn);
      const outcome = await this.waitReady(vm, both, deadline, probeUntil);
      if (both.aborted) throw both.reason; // stop() or the caller gave up while READY was on its way
      if (outcome === 'silent') {
        await this.destroy(vm, 0);
        return null;
      }
      vm.info.state = 'running';
      return vm;
    } catch (e) {
      await this.destroy(vm, 500);
      throw bootError(e, vm, both);
    }
  }

  /** Resolves 'ready' on the agent's READY, 'silent' past `probeUntil` or when QMP reports a dead guest; rejects otherwise. */
  private waitReady(vm: Vm, signal: AbortSignal, deadline: number, probeUntil?: number): Promise<'ready' | 'silent'> {
    return new Promise((resolve, reject) => {
      const timers: NodeJS.Timeout[] = [];
      const done = (f: () => void) => {
        timers.forEach(clearTimeout);
        clearInterval(poll);
        signal.removeEventListener('abort', onAbort);
        vm.agent?.off('msg', onMsg);
        f();
      };
      const onMsg = (m: AgentMsg) => {
        if (m.type === 'ready') done(() => resolve('ready'));
      };
      const onAbort = () => done(() => reject(signal.reason));
      if (signal.aborted) return reject(signal.reason);
      if (vm.ready) return resolve('ready');
      vm.agent?.on('msg', onMsg);
      signal.addEventListener('abort', onAbort, { once: true });
      void vm.exited.then(() =>
        done(() => reject(err.internal(`QEMU exited (${fmtExit(vm.exitInfo)}) before the guest agent was ready`))),
      );
      timers.push(
        setTimeout(
          () => done(() => reject(err.timeout(`the guest agent was not ready within ${this.o.bootTimeoutMs} ms`))),
          Math.max(0, deadline - Date.now()),
        ),
      );
      if (probeUntil)
        timers.push(setTimeout(() => done(() => resolve('silent')), Math.max(0, probeUntil - Date.now())));
      const poll = setInterval(() => {
        if (!probeUntil || !vm.qmp) return;
        vm.qmp.queryStatus(500).then(
          (s) => {
            if (s.status === 'internal-error' || s.status === 'guest-panicked') done(() => resolve('silent'));
          },
          () => {},
        );
      }, 250);
    });
  }

  private onAgent(vm: Vm, m: AgentMsg): void {
    const id = vm.info.sandboxId;
    if (m.type === 'ready') {
      vm.ready = true;
      return;
    }
    if (m.type === 'state') return; // an answer to an earlier LIST
    const p = vm.procs.get(m.containerId);
    if (m.type === 'started') {
      if (p?.state === 'starting' && p.start) {
        p.state = 'running';
        clearTimeout(p.start.timer);
        p.start.resolve(m.pid);
        delete p.start;
      } else if (p?.state !== 'running') {
        // running: known from an adoption's STATE already
        // Its start already timed out: nobody expects this process.
        vm.orphans.add(m.containerId);
        vm.agent?.send(encodeSignal(m.containerId, 9));
      }
    } else if (m.type === 'output') {
      if (p?.state === 'running') this.emit('output', id, m.containerId, m.fd, m.data);
    } else if (m.type === 'exit') {
      if (vm.orphans.delete(m.containerId) || p?.state !== 'running') {
        vm.agent?.send(encodeAck(m.containerId)); // nobody to tell: let the guest forget it
        return;
      }
      vm.procs.delete(m.containerId);
      this.emitExit(vm, m.containerId, m.status, true);
    } else if (m.type === 'error' && p?.state === 'starting' && p.start) {
      vm.procs.delete(m.containerId);
      clearTimeout(p.start.timer);
      p.start.reject(
        (ERRNO_CODE[m.errno] ?? err.precondition)(`start ${m.containerId} in sandbox ${id}: ${m.message}`),
      );
    }
  }

  /** Emit an exit on a later macrotask; for an exit the guest reported (`ack`), then let the guest forget it. */
  private emitExit(vm: Vm, containerId: string, exitStatus: number, ack: boolean): void {
    setImmediate(() => {
      const e: ExitEvent = {
        kind: 'exit',
        sandboxId: vm.info.sandboxId,
        containerId,
        exitStatus,
        exitedAt: Date.now(),
      };
      this.emit('exit', e);
      if (!ack) return;
      const send = () => {
        vm.agent?.send(encodeAck(containerId));
      };
      if (!this.o.confirmExit) send();
      else
        this.o.confirmExit(e).then(send, () => {
          /* not confirmed: the guest keeps it for the next adoption */
        });
    });
  }

  /** QEMU is gone: unrequested deaths of running VMs become `vmExit` (after their processes' exits). */
  private onVmExit(vm: Vm): void {
    if (vm.info.state !== 'running' || vm.destroying || vm.released) return; // boot, adoption and stop clean up themselves
    void this.destroy(vm, 0).then(() => {
      const e = vm.exitInfo ?? { code: null, signal: null };
      setImmediate(() =>
        this.emit('vmExit', {
          kind: 'vmExit',
          sandboxId: vm.info.sandboxId,
          code: e.code,
          signal: e.signal,
          at: Date.now(),
        }),
      );
    });
  }

  /** Make QEMU go away (QMP quit, wait `graceMs`, SIGTERM, SIGKILL), reap it, end its processes, remove its files. */
  private destroy(vm: Vm, graceMs: number): Promise<void> {
    vm.destroying ??= (async () => {
      try {
        if (!vm.exitInfo && vm.info.pid > 0) {
          if (graceMs > 0 && vm.qmp && !vm.qmp.isClosed) {
            vm.requested = true;
            await vm.qmp.quit(Math.min(1000, graceMs)).catch(() => {});
          }
          if (!(await waitFor(vm.exited, graceMs))) {
            vm.requested = true;
            kill(vm.info.pid, 'SIGTERM');
            if (!(await waitFor(vm.exited, graceMs > 0 ? 1000 : 100))) kill(vm.info.pid, 'SIGKILL');
          }
          if (!(await waitFor(vm.exited, 10_000))) throw err.internal(`QEMU pid ${vm.info.pid} survived SIGKILL`);
        }
        vm.unwatch?.();
        vm.qmp?.close();
        vm.agent?.close();
        this.failStarts(vm, 'the VM went away');
        for (const cid of vm.procs.keys()) this.emitExit(vm, cid, EXIT_UNKNOWN, false);
        vm.procs.clear();
        vm.tails = { console: tailOf(vm.paths.console), stderr: tailOf(vm.paths.stderr) };
        removeFiles(vm.paths);
        if (this.vms.get(vm.info.sandboxId) === vm) {
          this.vms.delete(vm.info.sandboxId);
          this.saveRegistry();
        }
      } finally {
        vm.markGone();
      }
    })();
    return vm.destroying;
  }

  /** Reject every start still waiting for the guest. */
  private failStarts(vm: Vm, why: string): void {
    for (const [cid, p] of vm.procs) {
      if (!p.start) continue;
      clearTimeout(p.start.timer);
      p.start.reject(err.unavailable(`sandbox ${vm.info.sandboxId}: ${why}`));
      vm.procs.delete(cid);
    }
  }

  /**
   * Stop a VM: QMP quit, then SIGTERM and SIGKILL as the deadline (epoch ms) nears. Idempotent: an unknown
   * sandbox resolves `{stopped: false}`, unless an orphaned QEMU of that sandbox runs (found by scanHost), which is killed.
   */
  async stop(sandboxId: string, deadlineMs = Date.now() + 10_000): Promise<{ stopped: boolean }> {
    const vm = this.vms.get(sandboxId);
    if (!vm)
      return {
        stopped: await killOrphans(
          this.scanHost().filter((v) => v.sandboxId === sandboxId),
          deadlineMs,
        ),
      };
    if (vm.info.state === 'booting' || vm.info.state === 'adopting') {
      vm.stopRequested = true;
      vm.abort.abort(err.cancelled(`sandbox ${sandboxId}: stopped while ${vm.info.state}`));
      await vm.gone; // the boot or the adoption cleans up after itself
      return { stopped: true };
    }
    vm.info.state = 'stopping';
    await this.destroy(vm, Math.min(5000, Math.max(200, deadlineMs - Date.now() - 1500)));
    return { stopped: true };
  }

  /** Stop every VM this driver runs. */
  async stopAll(deadlineMs = Date.now() + 10_000): Promise<void> {
    await Promise.all([...this.vms.keys()].map((id) => this.stop(id, deadlineMs)));
  }

  /** Run a container process in the guest; resolves once it was exec'd (guest pid), rejects if it could not start. */
  async startProcess(spec: ProcessSpec): Promise<{ started: true; pid: number }> {
    await this.settled(spec.sandboxId);
    const vm = this.running(spec.sandboxId);
    const cid = spec.containerId;
    if (spec.terminal) throw err.notImplemented('terminal processes: the guest agent has no pty support');
    if (!cid || cid.includes('/') || cid === '.' || cid === '..' || Buffer.byteLength(cid) > 255)
      throw err.invalid(`containerId ${JSON.stringify(cid)}`);
    if (!spec.args.length) throw err.invalid(`container ${cid}: args must not be empty`);
    const ids = [spec.uid, spec.gid, ...spec.additionalGids];
    if (spec.additionalGids.length > 256) throw err.invalid(`container ${cid}: more than 256 additionalGids`);
    if (!ids.every((n) => Number.isInteger(n) && n >= 0 && n < 2 ** 32))
      throw err.invalid(`container ${cid}: uid, gid and additionalGids must be integers >= 0`);
    if (vm.procs.has(cid)) throw err.exists(`container ${cid} has a process in sandbox ${spec.sandboxId}`);
    const frame = encodeRun({
      containerId: cid,
      args: spec.args,
      env: spec.env,
      cwd: spec.cwd || '/',
      uid: spec.uid,
      gid: spec.gid,
      additionalGids: spec.additionalGids,
    });
    if (frame.length - 4 > MAX_FRAME) throw err.exhausted(`container ${cid}: args and env exceed ${MAX_FRAME} bytes`);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        vm.procs.delete(cid);
        reject(err.timeout(`container ${cid}: the guest did not report a start within ${this.o.startTimeoutMs} ms`));
      }, this.o.startTimeoutMs);
      vm.procs.set(cid, {
        state: 'starting',
        start: { resolve: (pid) => resolve({ started: true, pid }), reject, timer },
      });
      if (!vm.agent?.send(frame)) this.failStarts(vm, 'the agent channel is closed');
    });
  }

  /** Resolves once the sandbox's VM (if any) is no longer being adopted. */
  async settled(sandboxId: string): Promise<void> {
    await this.vms.get(sandboxId)?.settled;
  }

  /** Send a signal to a container's main process. False when it is not running (or its VM is still being adopted: await `settled` first). */
  signal(sandboxId: string, containerId: string, sig: number): { delivered: boolean } {
    const vm = this.vms.get(sandboxId);
    if (!vm) throw err.notFound(`sandbox ${sandboxId} has no VM`);
    if (!Number.isInteger(sig) || sig < 1 || sig > 64) throw err.invalid(`signal ${sig}: want 1..64`);
    if (vm.procs.get(containerId)?.state !== 'running' || !vm.agent?.send(encodeSignal(containerId, sig)))
      return { delivered: false };
    return { delivered: true };
  }

  /** The VMs this driver runs (booting and adopting ones included), with the containers running in each. */
  list(): (VmInfo & { processes: string[] })[] {
    return [...this.vms.values()].map((v) => ({
      ...v.info,
      processes: [...v.procs].filter(([, p]) => p.state === 'running').map(([c]) => c),
    }));
  }

  /**
   * The Corral QEMUs on the host (by the `-name corral-<id>` marker) that this driver may treat as its own:
   * tagged with its owner, or untagged. With no owner set: all of them.
   */
  scanHost(): HostVm[] {
    return scanHost().filter(ownedBy(this.o.owner));
  }

  /**
   * Take over the QEMUs tagged with this driver's owner that run on the host but not under this driver:
   * what a worker that died left behind. Each is registered at once (state `adopting`: `stop` cancels the
   * adoption, `startProcess` and `settled` wait for it), then its QMP answers `query-status` with `running`
   * and its guest agent answers LIST with the containers it still knows. Exits the guest kept while no host
   * listened are emitted. A VM that cannot be adopted (sockets gone, QMP dead or not running, the guest
   * silent until `adoptTimeoutMs`) is stopped and reported as `vmExit`. Untagged QEMUs are left alone.
   */
  adoptAll(): Promise<Adoption> {
    const owner = this.o.owner;
    const all = scanHost();
    const found =
      owner === undefined ? [] : all.filter((v) => v.owner === owner && this.vms.get(v.sandboxId)?.info.pid !== v.pid);
    // VMs the registry lists whose QEMU is gone: they died while no driver watched.
    const dead = this.loadRegistry().filter(
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
    const adoptions = found.map((h) => this.adopt(h, Date.now() + this.o.adoptTimeoutMs));
    this.saveRegistry();
    return Promise.all(adoptions).then((rs) => ({
      adopted: rs.flatMap((r) => ('running' in r ? [r] : [])),
      stopped: rs.flatMap((r) => ('reason' in r ? [r] : [])),
      dead: dead.map((e) => ({
        sandboxId: e.sandboxId,
        pid: e.pid,
        reason: 'its QEMU exited while no worker watched it',
      })),
    }));
  }

  private saveRegistry(): void {
    const path = this.o.registryPath;
    if (!path) return;
    const entries: RegistryEntry[] = [...this.vms.values()].flatMap((v) =>
      v.ticks && v.info.pid > 0
        ? [{ sandboxId: v.info.sandboxId, pid: v.info.pid, ticks: v.ticks, paths: v.paths }]
        : [],
    );
    try {
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(`${path}.tmp`, JSON.stringify(entries) + '\n', { mode: 0o600 });
      renameSync(`${path}.tmp`, path);
    } catch {
      /* best effort: without it, a VM that dies while no driver runs goes unreported */
    }
  }

  private loadRegistry(): RegistryEntry[] {
    if (!this.o.registryPath) return [];
    try {
      const v: unknown = JSON.parse(readFileSync(this.o.registryPath, 'utf8'));
      return Array.isArray(v)
        ? (v as RegistryEntry[]).filter(
            (e) =>
              typeof e?.sandboxId === 'string' &&
              Number.isInteger(e.pid) &&
              typeof e.ticks === 'string' &&
              typeof e.paths?.qmp === 'string',
          )
        : [];
    } catch {
      return [];
    }
  }

  private adopt(h: HostVm, deadlineMs: number): Promise<AdoptedVm | StoppedVm> {
    let argv: string[] = [];
    try {
      argv = readFileSync(`/proc/${h.pid}/cmdline`, 'utf8').split('\0');
    } catch {
      /* gone meanwhile */
    }
    const cmd = parseQemuCmdline(argv);
    const start = procStart(h.pid);
    if (!cmd || !start || this.vms.has(h.sandboxId)) {
      // Nothing to talk to: end the process. A second QEMU of a sandbox that has one is no VM exit.
      const duplicate = this.vms.has(h.sandboxId);
      const reason = duplicate
        ? `a second QEMU of sandbox ${h.sandboxId}`
        : !start
          ? 'it exited meanwhile'
          : 'unrecognised command line';
      return killOrphans([h], Date.now() + 5000)
        .catch(() => false)
        .then(() => {
          if (!duplicate)
            setImmediate(() =>
              this.emit('vmExit', { kind: 'vmExit', sandboxId: h.sandboxId, code: null, signal: null, at: Date.now() }),
            );
          return { sandboxId: h.sandboxId, pid: h.pid, reason };
        });
    }
    let markGone = () => {};
    let settle = () => {};
    const watch = watchPid(h.pid, start.ticks);
    const vm: Vm = {
      info: {
        sandboxId: h.sandboxId,
        pid: h.pid,
        accel: cmd.accel,
        state: 'adopting',
        startedAt: start.at,
        adoptedAt: 0,
      },
      paths: {
        ...vmPaths(dirname(cmd.agent), h.sandboxId),
        qmp: cmd.qmp,
        agent: cmd.agent,
        ...(cmd.console ? { console: cmd.console } : {}),
      },
      ready: false,
      abort: new AbortController(),
      procs: new Map(),
      orphans: new Set(),
      gone: new Promise<void>((r) => {
        markGone = r;
      }),
      markGone: () => markGone(),
      settled: new Promise<void>((r) => {
        settle = r;
      }),
      exited: watch.gone.then(() => {
        vm.exitInfo ??= { code: null, signal: null };
      }),
      unwatch: watch.stop,
      ticks: start.ticks,
    };
    this.vms.set(h.sandboxId, vm);
    void vm.exited.then(() => this.onVmExit(vm));
    return (async (): Promise<AdoptedVm | StoppedVm> => {
      try {
        for (const f of [vm.paths.qmp, vm.paths.agent])
          if (!existsSync(f)) throw err.unavailable(`its socket ${f} is gone`);
        const alive = () => !vm.exitInfo;
        vm.qmp = await Qmp.connect(vm.paths.qmp, {
          deadlineMs: Math.min(deadlineMs, Date.now() + 5000),
          signal: vm.abort.signal,
          alive,
        });
        const st = await vm.qmp.queryStatus(2000);
        if (st.status !== 'running') throw err.unavailable(`QMP says the guest is ${st.status}`);
        const token = randomInt(1, 0xffffffff);
        vm.agent = await AgentChannel.connect(vm.paths.agent, { deadlineMs, signal: vm.abort.signal, alive }, token);
        let resync = { discarded: 0, frames: 0 };
        vm.agent.once('resync', (r) => {
          resync = r;
        });
        vm.agent.send(encodeList(token));
        const found = await this.takeOver(vm, token, deadlineMs);
        vm.info.adoptedAt = Date.now();
        return {
          sandboxId: h.sandboxId,
          pid: h.pid,
          accel: cmd.accel,
          resync,
          running: found.filter((c) => !c.exited).map((c) => c.containerId),
          exited: found.filter((c) => c.exited).map((c) => ({ containerId: c.containerId, status: c.status })),
        };
      } catch (e) {
        const reason =
          vm.abort.signal.aborted && vm.stopRequested ? 'stopped while being adopted' : ensureError(e).message;
        await this.destroy(vm, 500).catch(() => {});
        if (!vm.stopRequested)
          setImmediate(() =>
            this.emit('vmExit', { kind: 'vmExit', sandboxId: h.sandboxId, code: null, signal: null, at: Date.now() }),
          );
        return { sandboxId: h.sandboxId, pid: h.pid, reason };
      } finally {
        settle();
      }
    })();
  }

  /**
   * Wait for the guest's STATE answering LIST(token), holding back what the guest said before it; then make
   * the VM ours: its containers become running processes, what was held back is handled in order, and the
   * exits the guest kept (not yet ACKed) that were not among it are emitted.
   */
  private takeOver(vm: Vm, token: number, deadlineMs: number): Promise<GuestContainer[]> {
    const agent = vm.agent!;
    return new Promise((resolve, reject) => {
      const held: AgentMsg[] = [];
      let over = false;
      const finish = (f: () => void) => {
        if (over) return;
        over = true;
        clearTimeout(timer);
        vm.abort.signal.removeEventListener('abort', onAbort);
        agent.off('msg', onMsg);
        agent.off('close', onClose);
        f();
      };
      const onAbort = () => finish(() => reject(vm.abort.signal.reason));
      const onClose = () => finish(() => reject(err.unavailable('the guest agent channel closed before STATE')));
      const onMsg = (m: AgentMsg) => {
        if (m.type !== 'state' || m.token !== token) {
          held.push(m);
          return;
        }
        finish(() => {
          for (const c of m.containers) vm.procs.set(c.containerId, { state: 'running' });
          vm.ready = true;
          vm.info.state = 'running';
          agent.on('msg', (x) => this.onAgent(vm, x));
          agent.on('close', () => this.failStarts(vm, 'the agent channel closed'));
          for (const x of held) this.onAgent(vm, x);
          for (const c of m.containers)
            if (c.exited && vm.procs.delete(c.containerId)) this.emitExit(vm, c.containerId, c.status, true);
          resolve(m.containers);
        });
      };
      const timer = setTimeout(
        () =>
          finish(() => reject(err.timeout(`the guest agent did not answer LIST within ${this.o.adoptTimeoutMs} ms`))),
        Math.max(0, deadlineMs - Date.now()),
      );
      agent.on('msg', onMsg);
      agent.on('close', onClose);
      vm.abort.signal.addEventListener('abort', onAbort, { once: true });
      void vm.exited.then(() => finish(() => reject(err.unavailable('QEMU exited'))));
      if (agent.isClosed) onClose();
    });
  }

  /**
   * Let go of every VM without stopping it, as a worker that dies would: close the QMP and agent
   * connections and forget the VMs (booting ones fail their boot and are stopped). Processes still
   * starting fail with Unavailable; no exit is emitted. A driver with the same owner can adopt them.
   */
  release(): void {
    for (const vm of [...this.vms.values()]) {
      if (vm.info.state === 'booting' || vm.info.state === 'adopting') {
        vm.stopRequested = true;
        vm.abort.abort(err.cancelled(`sandbox ${vm.info.sandboxId}: the driver let go while it was ${vm.info.state}`));
        continue;
      }
      vm.released = true;
      vm.unwatch?.();
      vm.qmp?.close();
      vm.agent?.close();
      this.failStarts(vm, 'the driver let go of the VM');
      this.vms.delete(vm.info.sandboxId);
    }
  }

  private running(sandboxId: string): Vm {
    const vm = this.vms.get(sandboxId);
    if (!vm) throw err.notFound(`sandbox ${sandboxId} has no VM`);
    if (vm.info.state !== 'running' || !vm.agent)
      throw err.precondition(`cannot start a process in sandbox ${sandboxId}: VM is ${vm.info.state}`);
    return vm;
  }
}

const waitFor = (p: Promise<void>, ms: number): Promise<boolean> =>
  new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    void p.then(() => {
      clearTimeout(t);
      resolve(true);
    });
  });

function removeFiles(p: VmPaths): void {
  for (const f of [p.qmp, p.agent, p.console, p.stderr]) rmSync(f, { force: true });
}
