/**
 * One VM's life: its QEMU process, its QMP connection, its guest agent channel, the container processes
 * in it, and its state, which moves only along these transitions (`to` refuses any other):
 *
 *     booting ──┬──→ running ──→ stopping ──→ stopped
 *     adopting ─┤       │            │
 *               │       └────────────┴──→ released   (the driver let go of it, as a dying worker does)
 *               └──→ stopped                         (a failed boot or adoption cleans up after itself)
 *
 * launch.ts makes a booting VM, adopt.ts an adopting one; the driver (qemu.ts) keeps them by sandbox.
 * A virtio-fs VM owns its virtiofsd too: stopped after QEMU; its death ends a running VM (a `vmExit`).
 */
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { err, type CorralError } from '../../errors.ts';
import type { ManagedVm } from '../../domain/ops.ts';
import type { AgentChannel, AgentMsg, GuestContainer } from './agent-channel.ts';
import { tailOf, type ExitInfo, type FailedVm } from './boot-error.ts';
import { kill } from './host-scan.ts';
import { GuestCtl } from './guest-ctl.ts';
import { GuestProcesses, type ProcessHooks } from './processes.ts';
import type { Qmp } from './qmp.ts';
import type { VmPaths } from './qemu-args.ts';
import type { Daemon } from './virtiofsd.ts';

export type VmState = 'booting' | 'adopting' | 'running' | 'stopping' | 'stopped' | 'released';
const NEXT: Record<VmState, readonly VmState[]> = {
  booting: ['running', 'stopped'],
  adopting: ['running', 'stopped'],
  running: ['stopping', 'released'],
  stopping: ['stopped', 'released'],
  stopped: [],
  released: [],
};

/** What a VM needs from its driver. */
export interface VmHooks extends ProcessHooks {
  /** A guest frame was dropped as malformed (the channel resynchronises itself). */
  malformed?(sandboxId: string, reason: string): void;
  /** The VM is gone (QEMU reaped, files removed): the driver forgets it. Called before `gone` resolves. */
  forget(vm: Vm): void;
}

export interface VmInit {
  sandboxId: string;
  /** The id in QEMU's `-name` when it is not `sandboxId` (a pool VM a sandbox claimed). */
  name?: string;
  pid: number;
  accel: 'kvm' | 'tcg';
  state: 'booting' | 'adopting';
  startedAt: number;
  paths: VmPaths;
  /** The QEMU process's start time (clock ticks since boot): with the pid, its identity in the registry. */
  ticks?: string;
  /** Absent for an adopted VM: not our child, its end is noticed through /proc (no exit code). */
  child?: ChildProcess;
  /** Ends the /proc watch of an adopted VM's pid. */
  unwatch?: () => void;
  /** virtio-fs: the VM's virtiofsd. */
  daemon?: Daemon;
}

export class Vm implements FailedVm {
  /** Whose VM it is: the sandbox, or a pool VM's own id until a sandbox claims it (`claim`). */
  sandboxId: string;
  /** The id QEMU was started with (`-name corral-<name>`): its files are named by it. */
  readonly name: string;
  readonly pid: number;
  readonly accel: 'kvm' | 'tcg';
  readonly startedAt: number;
  readonly paths: VmPaths;
  readonly ticks?: string;
  readonly child?: ChildProcess;
  readonly daemon?: Daemon;
  /** Set on a VM taken over from an earlier driver: when it was adopted (0 while adopting). */
  adoptedAt?: number;
  qmp?: Qmp;
  agent?: AgentChannel;
  /** The guest agent said READY (or, adopted, answered LIST). */
  ready = false;
  /** Aborted to cancel a boot or an adoption in progress. */
  readonly abort = new AbortController();
  /** stop() (or release) was asked while booting or adopting: no vmExit. */
  stopRequested = false;
  /** Adopted VMs: resolves once the adoption has succeeded or the VM was stopped. */
  settled?: Promise<void>;
  /** Resolves when QEMU has exited (reaped, or its pid gone from /proc). */
  readonly exited: Promise<void>;
  /** Resolves when `destroy` has finished: process reaped, files removed, VM forgotten. */
  readonly gone: Promise<void>;
  exitInfo?: ExitInfo;
  spawnError?: Error;
  /** We asked QEMU to go; without it, an exit is QEMU dying on its own. */
  requested?: boolean;
  tails?: { console: string; stderr: string };

  /** The container processes in the guest. */
  readonly procs: GuestProcesses;
  /** cgroup control of its containers (CTL/RESULT). */
  readonly ctl: GuestCtl;
  private current: VmState;
  private destroying?: Promise<void>;
  // Both set in the constructor, by the executors of `exited` and `gone` (which run at once).
  private markExitedOnce!: () => void;
  private markGone!: () => void;
  private unwatch?: () => void;

  constructor(
    init: VmInit,
    private hooks: VmHooks,
  ) {
    this.sandboxId = init.sandboxId;
    this.name = init.name ?? init.sandboxId;
    this.pid = init.pid;
    this.accel = init.accel;
    this.current = init.state;
    this.startedAt = init.startedAt;
    this.paths = init.paths;
    this.ticks = init.ticks;
    this.child = init.child;
    this.unwatch = init.unwatch;
    this.daemon = init.daemon;
    if (init.state === 'adopting') this.adoptedAt = 0;
    this.procs = new GuestProcesses(init.sandboxId, hooks, () => this.agent);
    this.ctl = new GuestCtl(init.sandboxId, () => this.agent);
    this.exited = new Promise<void>((r) => (this.markExitedOnce = r));
    this.gone = new Promise<void>((r) => (this.markGone = r));
    void this.exited.then(() => this.lost(0));
    void this.daemon?.exited.then(() => this.lost(500)); // the guest's share is gone: the VM is of no use
  }

  get state(): VmState {
    return this.current;
  }

  to(next: VmState): void {
    if (!NEXT[this.current].includes(next))
      throw err.internal(`VM of sandbox ${this.sandboxId}: no transition from ${this.current} to ${next}`);
    this.current = next;
  }

  /** A sandbox took this (pool) VM: its events and errors name that sandbox from now on. */
  claim(sandboxId: string): void {
    this.sandboxId = sandboxId;
    this.procs.sandboxId = sandboxId;
    this.ctl.sandboxId = sandboxId;
  }

  /** Booting or being adopted: not yet the driver's to run processes in. */
  get starting(): boolean {
    return this.current === 'booting' || this.current === 'adopting';
  }

  /** QEMU exited; the first report wins (a spawn error, then its exit). */
  markExited(info: ExitInfo, spawnError?: Error): void {
    this.exitInfo ??= info;
    if (spawnError) this.spawnError ??= spawnError;
    this.markExitedOnce();
  }

  /** What `list` shows; null once the VM is stopped or released. */
  describe(): ManagedVm | null {
    const s = this.current;
    if (s === 'stopped' || s === 'released') return null;
    return {
      sandboxId: this.sandboxId,
      pid: this.pid,
      accel: this.accel,
      state: s,
      startedAt: this.startedAt,
      ...(this.adoptedAt === undefined ? {} : { adoptedAt: this.adoptedAt }),
      processes: this.procs.running(),
    };
  }

  /** Handle what the guest agent says from now on; a closed channel fails the starts still waiting. */
  listen(): void {
    this.agent?.on('msg', (m) => this.onAgent(m));
    this.agent?.on('resync', () => this.procs.resynced());
    this.agent?.on('malformed', (why) => this.hooks.malformed?.(this.sandboxId, why));
    this.agent?.on('close', () => {
      this.procs.failStarts('the agent channel closed');
      this.ctl.failAll('the agent channel closed');
    });
  }

  /**
   * The guest's STATE answered our LIST: the VM is ours. Its containers become our processes, what the guest
   * said before the STATE is handled in order, then the exits it kept (not yet ACKed) are emitted.
   */
  takeOver(containers: GuestContainer[], held: AgentMsg[]): void {
    this.ready = true;
    this.to('running');
    this.listen();
    this.procs.adopt(containers, held);
  }

  /** Cancel the boot or adoption in progress: it cleans up after itself (await `gone`), with no vmExit. */
  cancel(reason: CorralError): void {
    this.stopRequested = true;
    this.abort.abort(reason);
  }

  /** Let go without stopping QEMU: close the connections; processes still starting fail with Unavailable. */
  release(): void {
    this.to('released');
    this.unwatch?.();
    this.qmp?.close();
    this.agent?.close();
    this.procs.failStarts('the driver let go of the VM');
  }

  private onAgent(m: AgentMsg): void {
    if (m.type === 'ready') this.ready = true;
    else if (m.type === 'result') this.ctl.onResult(m);
    else this.procs.onMsg(m);
  }

  /** QEMU (or its virtiofsd) is gone: a running VM's unrequested end becomes `vmExit` (after its processes' exits). */
  private lost(graceMs: number): void {
    if (this.current !== 'running') return; // boot, adoption and stop clean up themselves; a released VM is not ours
    void this.destroy(graceMs).then(() => {
      const e = this.exitInfo ?? { code: null, signal: null };
      setImmediate(() =>
        this.hooks.events.emit('vmExit', {
          kind: 'vmExit',
          sandboxId: this.sandboxId,
          code: e.code,
          signal: e.signal,
          at: Date.now(),
        }),
      );
    });
  }

  /**
   * Make QEMU go away (QMP quit, wait `graceMs`, SIGTERM, SIGKILL), reap it, end its processes (exit 255),
   * remove its files, and have the driver forget it. Idempotent: a second call gets the first's promise.
   */
  destroy(graceMs: number): Promise<void> {
    if (this.current === 'running') this.to('stopping');
    this.destroying ??= (async () => {
      try {
        if (!this.exitInfo && this.pid > 0) {
          if (graceMs > 0 && this.qmp && !this.qmp.isClosed) {
            this.requested = true;
            await this.qmp.quit(Math.min(1000, graceMs)).catch(() => {
              // A quit that failed is no matter: SIGTERM, then SIGKILL, follow below if QEMU is still there.
            });
          }
          if (!(await waitFor(this.exited, graceMs))) {
            this.requested = true;
            kill(this.pid, 'SIGTERM');
            if (!(await waitFor(this.exited, graceMs > 0 ? 1000 : 100))) kill(this.pid, 'SIGKILL');
          }
          if (!(await waitFor(this.exited, 10_000))) throw err.internal(`QEMU pid ${this.pid} survived SIGKILL`);
        }
        await this.daemon?.stop(graceMs > 0 ? 1000 : 100); // after QEMU: it is the daemon's client
        this.unwatch?.();
        this.qmp?.close();
        this.agent?.close();
        this.procs.endAll();
        const daemonLog = this.daemon && this.paths.daemonLog;
        this.tails = {
          console: tailOf(this.paths.console),
          stderr: tailOf(this.paths.stderr) + (daemonLog ? `\n--- virtiofsd log ---\n${tailOf(daemonLog)}` : ''),
        };
        removeFiles(this.paths);
        if (this.current !== 'released') this.to('stopped');
        this.hooks.forget(this);
      } finally {
        this.markGone();
      }
    })();
    return this.destroying;
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

/** Remove a VM's sockets and logs (its virtiofsd's too). */
export function removeFiles(p: VmPaths): void {
  for (const f of [p.qmp, p.agent, p.console, p.stderr, p.vfs, p.daemonLog]) if (f) rmSync(f, { force: true });
}
