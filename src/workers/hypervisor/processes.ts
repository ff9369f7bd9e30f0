/**
 * The container processes of one guest, as its agent channel reports them: starting (RUN sent, waiting
 * for STARTED or ERROR) → running → exited. Every process whose start resolved gets exactly one `exit`
 * event: from the guest, or with status 255 when its VM went away first (`endAll`).
 */
import type { EventEmitter } from 'node:events';
import { err, type CorralError } from '../../errors.ts';
import type { ProcessSpec } from '../../domain/ops.ts';
import {
  MAX_FRAME,
  encodeAck,
  encodeRun,
  encodeSignal,
  type AgentChannel,
  type AgentMsg,
  type GuestContainer,
} from './agent-channel.ts';
import type { ExitEvent, HypervisorEvents } from './hypervisor.ts';

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
  state: 'starting' | 'running';
  start?: { resolve: (pid: number) => void; reject: (e: CorralError) => void; timer: NodeJS.Timeout };
}

const EXIT_UNKNOWN = 255;
const ERRNO_CODE: Record<number, (m: string) => CorralError> = {
  2: err.notFound,
  17: err.exists,
  22: err.invalid,
  11: err.exhausted,
};

/**
 * The checks the guest agent's protocol needs of a process: the container id is a path component in the
 * guest, ids are u32, terminals are not supported. InvalidArgument or NotImplemented otherwise.
 */
export function checkProcess(spec: ProcessSpec): void {
  const cid = spec.containerId;
  if (spec.terminal) throw err.notImplemented('terminal processes: the guest agent has no pty support');
  if (!cid || cid.includes('/') || cid === '.' || cid === '..' || Buffer.byteLength(cid) > 255)
    throw err.invalid(`containerId ${JSON.stringify(cid)}`);
  if (!spec.args.length) throw err.invalid(`container ${cid}: args must not be empty`);
  const ids = [spec.uid, spec.gid, ...spec.additionalGids];
  if (spec.additionalGids.length > 256) throw err.invalid(`container ${cid}: more than 256 additionalGids`);
  if (!ids.every((n) => Number.isInteger(n) && n >= 0 && n < 2 ** 32))
    throw err.invalid(`container ${cid}: uid, gid and additionalGids must be integers >= 0`);
}

/** The RUN frame for a process; ResourceExhausted when it exceeds what the guest agent takes. */
export function runFrame(spec: ProcessSpec): Buffer {
  const cid = spec.containerId;
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
  return frame;
}

export class GuestProcesses {
  private procs = new Map<string, Proc>();
  /** Containers whose start timed out but that the guest started anyway: killed, their exit not reported. */
  private orphans = new Set<string>();

  constructor(
    private sandboxId: string,
    private hooks: ProcessHooks,
    /** The VM's agent channel, once connected. */
    private channel: () => Pick<AgentChannel, 'send'> | undefined,
  ) {}

  has(containerId: string): boolean {
    return this.procs.has(containerId);
  }

  /** The containers whose process runs. */
  running(): string[] {
    return [...this.procs].filter(([, p]) => p.state === 'running').map(([c]) => c);
  }

  /** Send a RUN frame; resolves with the guest pid on STARTED, rejects on the guest's ERROR or a timeout. */
  start(containerId: string, frame: Buffer): Promise<number> {
    const ms = this.hooks.startTimeoutMs;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.procs.delete(containerId);
        reject(err.timeout(`container ${containerId}: the guest did not report a start within ${ms} ms`));
      }, ms);
      this.procs.set(containerId, { state: 'starting', start: { resolve, reject, timer } });
      if (!this.channel()?.send(frame)) this.failStarts('the agent channel is closed');
    });
  }

  /** False when the container has no running process or the channel is closed. */
  signal(containerId: string, sig: number, all = false): boolean {
    const running = this.procs.get(containerId)?.state === 'running';
    return running && !!this.channel()?.send(encodeSignal(containerId, sig, all));
  }

  /** An adopted guest's STATE: its containers are running processes; the exits it kept are emitted (after `held`). */
  adopt(containers: GuestContainer[], held: AgentMsg[]): void {
    for (const c of containers) this.procs.set(c.containerId, { state: 'running' });
    for (const x of held) this.onMsg(x);
    for (const c of containers)
      if (c.exited && this.procs.delete(c.containerId)) this.emitExit(c.containerId, c.status, true);
  }

  /** A guest message about a process (STARTED, OUTPUT, EXIT, ERROR). */
  onMsg(m: AgentMsg): void {
    if (m.type === 'ready' || m.type === 'state') return;
    const p = this.procs.get(m.containerId);
    if (m.type === 'started') {
      if (p?.state === 'starting' && p.start) {
        p.state = 'running';
        clearTimeout(p.start.timer);
        p.start.resolve(m.pid);
        delete p.start;
      } else if (p?.state !== 'running') {
        // running: known from an adoption's STATE already
        // Its start already timed out: nobody expects this process.
        this.orphans.add(m.containerId);
        this.channel()?.send(encodeSignal(m.containerId, 9));
      }
    } else if (m.type === 'output') {
      if (p?.state === 'running') this.hooks.events.emit('output', this.sandboxId, m.containerId, m.fd, m.data);
    } else if (m.type === 'exit') {
      if (this.orphans.delete(m.containerId) || p?.state !== 'running') {
        this.channel()?.send(encodeAck(m.containerId)); // nobody to tell: let the guest forget it
        return;
      }
      this.procs.delete(m.containerId);
      this.emitExit(m.containerId, m.status, true);
    } else if (m.type === 'error' && p?.state === 'starting' && p.start) {
      this.procs.delete(m.containerId);
      clearTimeout(p.start.timer);
      p.start.reject(
        (ERRNO_CODE[m.errno] ?? err.precondition)(`start ${m.containerId} in sandbox ${this.sandboxId}: ${m.message}`),
      );
    }
  }

  /** Reject every start still waiting for the guest (Unavailable). */
  failStarts(why: string): void {
    for (const [cid, p] of this.procs) {
      if (!p.start) continue;
      clearTimeout(p.start.timer);
      p.start.reject(err.unavailable(`sandbox ${this.sandboxId}: ${why}`));
      this.procs.delete(cid);
    }
  }

  /** The VM went away: starts fail, every running process exits with 255. */
  endAll(): void {
    this.failStarts('the VM went away');
    for (const cid of this.procs.keys()) this.emitExit(cid, EXIT_UNKNOWN, false);
    this.procs.clear();
  }

  /** Emit an exit on a later macrotask; for an exit the guest reported (`ack`), then let the guest forget it. */
  private emitExit(containerId: string, exitStatus: number, ack: boolean): void {
    setImmediate(() => {
      const e: ExitEvent = { kind: 'exit', sandboxId: this.sandboxId, containerId, exitStatus, exitedAt: Date.now() };
      this.hooks.events.emit('exit', e);
      if (!ack) return;
      const send = () => {
        this.channel()?.send(encodeAck(containerId));
      };
      if (!this.hooks.confirmExit) send();
      else
        this.hooks.confirmExit(e).then(send, () => {
          /* not confirmed: the guest keeps it for the next adoption */
        });
    });
  }
}
