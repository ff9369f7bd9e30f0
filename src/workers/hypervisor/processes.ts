/**
 * The processes of one guest (containers' inits and their execs), as its agent channel reports them:
 * starting (RUN/EXEC sent, waiting for STARTED or ERROR) → running → exited. Each is known by its key,
 * `containerId` or `containerId/execId`. Every process whose start resolved gets exactly one `exit`
 * event: from the guest, or with status 255 when its VM went away first (`endAll`).
 */
import type { EventEmitter } from 'node:events';
import { err, type CorralError } from '../../errors.ts';
import type { ConsoleSize } from '../../domain/ops.ts';
import {
  encodeAck,
  encodeCloseStdin,
  encodeResize,
  encodeSignal,
  encodeStdin,
  type AgentChannel,
  type AgentMsg,
  type GuestContainer,
  type Key,
} from './agent-channel.ts';
import { errnoError } from './guest-ctl.ts';
import type { ExitEvent, HypervisorEvents } from './hypervisor.ts';
import { StdinWindow } from './stdin-window.ts';

export { checkProcess, checkExec, runFrame, execFrame } from './process-spec.ts';

/** What the processes of a VM need from its driver. */
export interface ProcessHooks {
  /** Where the events go: the driver, which is the emitter its listeners subscribe to. */
  events: Pick<EventEmitter<HypervisorEvents>, 'emit'>;
  /**
   * Called after each guest-reported exit was emitted; the guest forgets the exit (ACK) once it resolves.
   * Until then the guest keeps it and reports it again to a driver that adopts the VM.
   */
  confirmExit?: (e: ExitEvent) => Promise<unknown>;
  /** How long the guest may take to report a started (or failed) process. */
  startTimeoutMs: number;
}

interface Proc {
  key: Key;
  state: 'starting' | 'running';
  /** Has a terminal (undefined: unknown, an adopted process). */
  tty?: boolean;
  stdin: StdinWindow;
  start?: { resolve: (pid: number) => void; reject: (e: CorralError) => void; timer: NodeJS.Timeout };
}

const EXIT_UNKNOWN = 255;
const parse = (key: string): Key => {
  const i = key.indexOf('/');
  return i < 0 ? { containerId: key } : { containerId: key.slice(0, i), execId: key.slice(i + 1) };
};
const str = (k: Key): string => (k.execId === undefined ? k.containerId : `${k.containerId}/${k.execId}`);

export class GuestProcesses {
  private procs = new Map<string, Proc>();
  /** Processes whose start timed out but that the guest started anyway: killed, their exit not reported. */
  private orphans = new Set<string>();

  constructor(
    public sandboxId: string,
    private hooks: ProcessHooks,
    /** The VM's agent channel, once connected. */
    private channel: () => Pick<AgentChannel, 'send'> | undefined,
  ) {}

  has(key: string): boolean {
    return this.procs.has(key);
  }

  /** The keys of the processes that run. */
  running(): string[] {
    return [...this.procs].filter(([, p]) => p.state === 'running').map(([c]) => c);
  }

  private add(key: string, state: Proc['state'], tty?: boolean): Proc {
    const k = parse(key);
    const p: Proc = { key: k, state, tty, stdin: new StdinWindow((d) => !!this.channel()?.send(encodeStdin(k, d))) };
    this.procs.set(key, p);
    return p;
  }

  private drop(key: string, why: string): void {
    this.procs.get(key)?.stdin.end(err.precondition(`process ${key} in sandbox ${this.sandboxId} ${why}`));
    this.procs.delete(key);
  }

  /** Send a RUN or EXEC frame; resolves with the guest pid on STARTED, rejects on the guest's ERROR or a timeout. */
  start(key: string, frame: Buffer, tty = false): Promise<number> {
    const ms = this.hooks.startTimeoutMs;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.drop(key, 'did not start');
        reject(err.timeout(`process ${key}: the guest did not report a start within ${ms} ms`));
      }, ms);
      this.add(key, 'starting', tty).start = { resolve, reject, timer };
      if (!this.channel()?.send(frame)) this.failStarts('the agent channel is closed');
    });
  }

  /** False when the process is not running or the channel is closed. */
  signal(key: string, sig: number, all = false): boolean {
    const p = this.procs.get(key);
    return p?.state === 'running' && !!this.channel()?.send(encodeSignal(p.key, sig, all));
  }

  private runningProc(key: string): Proc {
    const p = this.procs.get(key);
    if (p?.state !== 'running') throw err.precondition(`process ${key} is not running in sandbox ${this.sandboxId}`);
    return p;
  }

  /** Resolves once the bytes were sent within the process's stdin window (the back-pressure point). */
  writeStdin(key: string, data: Uint8Array): Promise<void> {
    return this.runningProc(key).stdin.write(data);
  }

  /** After what was written so far: EOF on the process's stdin. An ended process: nothing to do. */
  async closeStdin(key: string): Promise<void> {
    const p = this.procs.get(key);
    if (!p) return;
    await p.stdin.drained();
    if (this.procs.get(key) === p) this.channel()?.send(encodeCloseStdin(p.key));
  }

  resize(key: string, size: ConsoleSize): boolean {
    const p = this.runningProc(key);
    if (p.tty === false) throw err.precondition(`process ${key} in sandbox ${this.sandboxId} has no terminal`);
    return !!this.channel()?.send(encodeResize(p.key, size.rows, size.cols));
  }

  /** An adopted guest's STATE: its processes run (full stdin windows); kept exits are emitted (after `held`). */
  adopt(containers: GuestContainer[], held: AgentMsg[]): void {
    for (const c of containers) this.add(str(c), 'running');
    for (const x of held) this.onMsg(x);
    for (const c of containers) if (c.exited && this.procs.has(str(c))) this.exited(str(c), c.status);
  }

  /** The channel re-found its frame boundaries: what the guest counted is unknown, windows start full. */
  resynced(): void {
    for (const p of this.procs.values()) p.stdin.reset();
  }

  /** A guest message about a process (STARTED, OUTPUT, EXIT, ERROR, WINDOW, OOM; a STATE's kept exits). */
  onMsg(m: AgentMsg): void {
    if (m.type === 'ready' || m.type === 'result') return;
    if (m.type === 'oom') {
      this.hooks.events.emit('oom', {
        kind: 'oom',
        sandboxId: this.sandboxId,
        containerId: m.containerId,
        at: Date.now(),
      });
      return;
    }
    if (m.type === 'state') {
      // A mid-stream resync's STATE: exits whose EXIT frame was lost in the broken stretch.
      for (const c of m.containers)
        if (c.exited && this.procs.get(str(c))?.state === 'running') this.exited(str(c), c.status);
      return;
    }
    const key = str(m);
    const p = this.procs.get(key);
    if (m.type === 'started') {
      if (p?.state === 'starting' && p.start) {
        p.state = 'running';
        clearTimeout(p.start.timer);
        p.start.resolve(m.pid);
        delete p.start;
      } else if (p?.state !== 'running') {
        // Its start already timed out: nobody expects this process. (running: known from a STATE already)
        this.orphans.add(key);
        this.channel()?.send(encodeSignal(m, 9));
      }
    } else if (m.type === 'output') {
      if (p?.state === 'running')
        this.hooks.events.emit('output', this.sandboxId, m.containerId, m.fd, m.data, m.execId);
    } else if (m.type === 'window') {
      p?.stdin.credit(m.bytes);
    } else if (m.type === 'exit') {
      if (this.orphans.delete(key) || p?.state !== 'running') {
        this.channel()?.send(encodeAck(m)); // nobody to tell: let the guest forget it
        return;
      }
      this.exited(key, m.status);
    } else if (p?.state === 'starting' && p.start) {
      this.drop(key, 'failed to start');
      clearTimeout(p.start.timer);
      p.start.reject(errnoError(m.errno, `start ${key} in sandbox ${this.sandboxId}: ${m.message}`));
    }
  }

  /** Reject every start still waiting for the guest (Unavailable). */
  failStarts(why: string): void {
    for (const [key, p] of this.procs) {
      if (!p.start) continue;
      clearTimeout(p.start.timer);
      p.start.reject(err.unavailable(`sandbox ${this.sandboxId}: ${why}`));
      this.drop(key, 'failed to start');
    }
  }

  /** The VM went away: starts fail, every running process exits with 255. */
  endAll(): void {
    this.failStarts('the VM went away');
    for (const [key, p] of [...this.procs]) {
      this.drop(key, 'ended with its VM');
      this.emitExit(p.key, EXIT_UNKNOWN, false);
    }
  }

  private exited(key: string, status: number): void {
    const p = this.procs.get(key);
    if (!p) return;
    this.drop(key, 'has exited');
    this.emitExit(p.key, status, true);
  }

  /** Emit an exit on a later macrotask; for an exit the guest reported (`ack`), then let the guest forget it. */
  private emitExit(k: Key, exitStatus: number, ack: boolean): void {
    setImmediate(() => {
      const e: ExitEvent = {
        kind: 'exit',
        sandboxId: this.sandboxId,
        containerId: k.containerId,
        ...(k.execId === undefined ? {} : { execId: k.execId }),
        exitStatus,
        exitedAt: Date.now(),
      };
      this.hooks.events.emit('exit', e);
      if (!ack) return;
      const send = () => {
        this.channel()?.send(encodeAck(k));
      };
      if (!this.hooks.confirmExit) send();
      else
        this.hooks.confirmExit(e).then(send, () => {
          /* not confirmed: the guest keeps it for the next adoption */
        });
    });
  }
}
