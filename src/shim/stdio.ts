/**
 * containerd's end of a process's stdio, copied to and from the agent's io subjects (docs/api.md).
 *
 * What containerd passes (CreateTaskRequest 5–7, ExecProcessRequest 4–6): `''` = no stream; an absolute
 * path = a FIFO its client made; `file:///path` = append to that file. `binary://` loggers are refused.
 * The rules that keep a shim from hanging (containerd-shim-v2.md §5.3):
 * - no open ever blocks: output FIFOs are opened O_RDWR (never blocks, never EPIPE), stdin O_RDONLY|O_NONBLOCK
 *   plus a keeper writer so EOF cannot come before CloseIO; all are libuv pipes (net.Socket), not fs streams;
 * - output is closed only after the process exited and what NATS delivered was written (`finish`), so the
 *   client sees everything and then EOF;
 * - output is back-pressured where it can be (the worker stops reading the guest when its NATS writes back
 *   up); past `MAX_PENDING` bytes unwritten here (a client that reads nothing), output is dropped and counted.
 */
import { constants, openSync, closeSync } from 'node:fs';
import { Socket } from 'node:net';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { err } from '../errors.ts';
import { pumpStdin } from '../bus/stdin-client.ts';
import { subjects } from '../bus/subjects.ts';
import type { Log } from '../log.ts';

export const MAX_PENDING = 4 * 1024 * 1024;

export interface ProcessRef {
  node: string;
  taskId: string;
  execId?: string;
}

export interface StdioPaths {
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

/** The path a stdio string names, or undefined for none; refuses what the shim cannot serve. */
export function stdioPath(v: string, what: string): string | undefined {
  if (v === '') return undefined;
  if (v.startsWith('file://') || v.startsWith('fifo://')) {
    let p: string;
    try {
      p = decodeURIComponent(new URL(v).pathname);
    } catch {
      throw err.invalid(`${what} ${JSON.stringify(v)}: not a valid URI`);
    }
    if (!p.startsWith('/')) throw err.invalid(`${what} ${JSON.stringify(v)}: no absolute path`);
    return p;
  }
  if (/^[a-z]+:\/\//.test(v)) throw err.invalid(`${what} ${v}: only FIFOs and file:// are supported`);
  if (!v.startsWith('/')) throw err.invalid(`${what} ${JSON.stringify(v)}: not an absolute path`);
  return v;
}

function pipeSocket(path: string, flags: number, readable: boolean): Socket {
  const fd = openSync(path, flags);
  return new Socket({ fd, readable, writable: !readable });
}

function openOutput(v: string, what: string): Socket | undefined {
  const path = stdioPath(v, what);
  if (!path) return undefined;
  const file = v.startsWith('file://');
  return pipeSocket(path, file ? constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT : constants.O_RDWR, false);
}

/** One process's copy loops. `start` subscribes output (before the process starts); `finish` after it exited. */
export class ProcessIo {
  private subs: Subscription[] = [];
  private outs: (Socket | undefined)[] = [];
  private keeper: number | undefined;
  private stdinClosed = false;
  dropped = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly ref: ProcessRef,
    private readonly paths: StdioPaths,
    private readonly log: Log,
  ) {}

  /** Opens the FIFOs and subscribes to the process's output subjects. Idempotent. */
  attachOutput() {
    if (this.subs.length) return;
    const { node, taskId, execId } = this.ref;
    const fds = this.paths.terminal ? (['stdout'] as const) : (['stdout', 'stderr'] as const);
    for (const fd of fds) {
      const out = openOutput(this.paths[fd], fd);
      this.outs.push(out);
      out?.on('error', (e) => this.log.warn({ err: e, ...this.ref, fd }, 'output FIFO failed'));
      const subject = execId ? subjects.execIo(node, taskId, execId, fd) : subjects.io(node, taskId, fd);
      this.subs.push(
        this.nc.subscribe(subject, {
          callback: (e, m) => {
            if (e || !out || out.destroyed) return;
            if (out.writableLength > MAX_PENDING) {
              if (this.dropped === 0) this.log.warn({ ...this.ref, fd }, 'output not read: dropping');
              this.dropped += m.data.length;
              return;
            }
            out.write(m.data);
          },
        }),
      );
    }
  }

  /** Feeds the stdin FIFO to the process once it runs (with back-pressure: bus/stdin-client.ts). */
  attachStdin() {
    const path = stdioPath(this.paths.stdin, 'stdin');
    if (!path || this.keeper !== undefined) return;
    const reader = pipeSocket(path, constants.O_RDONLY | constants.O_NONBLOCK, true);
    if (!this.stdinClosed) this.keeper = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
    void pumpStdin(this.nc, this.ref, reader)
      .catch((e: unknown) => this.log.warn({ err: e, ...this.ref }, 'stdin ended early'))
      .finally(() => reader.destroy());
  }

  /** containerd's CloseIO: EOF once the client's writer is gone too. Before attachStdin: no keeper at all. */
  closeStdin() {
    this.stdinClosed = true;
    if (this.keeper !== undefined) closeSync(this.keeper);
    this.keeper = undefined;
  }

  /** After the process exited: what NATS still holds is written, then the client gets EOF. */
  async finish() {
    await this.nc.flush().catch(() => undefined); // output published before the exit is here once this returns
    for (const s of this.subs) s.unsubscribe();
    this.subs = [];
    this.closeStdin();
    const ending = this.outs.map((o) =>
      o && !o.destroyed ? new Promise<void>((res) => o.end(() => (o.destroy(), res()))) : Promise.resolve(),
    );
    await Promise.all(ending);
    if (this.dropped) this.log.warn({ ...this.ref, dropped: this.dropped }, 'output bytes dropped (nobody read)');
  }

  /** Everything closed at once (delete, shutdown). */
  close() {
    for (const s of this.subs) s.unsubscribe();
    this.subs = [];
    this.closeStdin();
    for (const o of this.outs) o?.destroy();
  }
}
