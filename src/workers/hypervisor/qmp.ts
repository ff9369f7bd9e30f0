/**
 * A minimal QMP client (QEMU Machine Protocol: newline-delimited JSON over a unix socket).
 * Commands carry an `id` and replies are matched by it; asynchronous events are ignored.
 * Every call has a timeout; a closed socket fails whatever is pending with Unavailable.
 */
import type { Socket } from 'node:net';
import { err, type CorralError } from '../../errors.ts';
import { connectUnix, type ConnectOptions } from './unix-socket.ts';

/** One line QEMU sends: its greeting, a reply to a command of ours (by `id`), or an event. */
interface QmpMessage {
  QMP?: unknown;
  id?: number;
  return?: unknown;
  error?: { class?: string; desc?: string };
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: CorralError) => void;
  timer: NodeJS.Timeout;
}

export class Qmp {
  private buf = '';
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private greeting: ((ok: boolean) => void) | null = null;
  private closed = false;

  private constructor(private sock: Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => this.onData(d));
    sock.on('error', () => sock.destroy());
    sock.on('close', () => this.onClose());
  }

  /** Connect (retrying until QEMU has bound the socket), read the greeting, negotiate capabilities. */
  static async connect(path: string, o: ConnectOptions): Promise<Qmp> {
    const q = new Qmp(await connectUnix(path, o));
    const onAbort = () => q.close();
    o.signal?.addEventListener('abort', onAbort, { once: true });
    if (o.signal?.aborted) onAbort();
    try {
      const left = Math.max(1, o.deadlineMs - Date.now());
      const ok = await new Promise<boolean>((resolve) => {
        const t = setTimeout(() => resolve(false), left);
        q.greeting = (v) => {
          clearTimeout(t);
          resolve(v);
        };
      });
      if (!ok) throw err.unavailable(`QMP ${path}: no greeting`);
      await q.execute('qmp_capabilities', undefined, Math.max(1, o.deadlineMs - Date.now()));
      return q;
    } catch (e) {
      q.close();
      throw o.signal?.aborted ? o.signal.reason : e;
    } finally {
      o.signal?.removeEventListener('abort', onAbort);
    }
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Run one command; resolves with its `return` value. QMP errors → Internal, timeout → Timeout. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = 2000): Promise<T> {
    if (this.closed) return Promise.reject(err.unavailable(`QMP ${command}: connection closed`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(err.timeout(`QMP ${command}: no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.sock.write(JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id }) + '\n');
    });
  }

  /** `query-status`: e.g. `{status: 'running', running: true}`. */
  queryStatus(timeoutMs?: number): Promise<{ status: string; running: boolean }> {
    return this.execute('query-status', undefined, timeoutMs);
  }

  /** Ask QEMU to exit. Resolves on the reply or when QEMU closes the socket, whichever comes first. */
  async quit(timeoutMs = 1000): Promise<void> {
    if (this.closed) return;
    const closed = new Promise<void>((r) => this.sock.once('close', () => r()));
    await Promise.race([
      this.execute('quit', undefined, timeoutMs).catch((e: CorralError) => {
        if (e.code !== 'Unavailable') throw e;
      }),
      closed,
    ]);
  }

  close(): void {
    this.sock.destroy();
  }

  private onData(d: string): void {
    this.buf += d;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (!line) continue;
      let msg: QmpMessage;
      try {
        msg = JSON.parse(line) as QmpMessage;
      } catch {
        continue;
      }
      if (msg.QMP) {
        this.greeting?.(true);
        this.greeting = null;
        continue;
      }
      const p = msg.id === undefined ? undefined : this.pending.get(msg.id);
      if (!p) continue; // an event, or a reply that already timed out
      this.pending.delete(msg.id!);
      clearTimeout(p.timer);
      if (msg.error) p.reject(err.internal(`QMP: ${msg.error.class ?? 'Error'}: ${msg.error.desc ?? ''}`));
      else p.resolve(msg.return);
    }
  }

  private onClose(): void {
    this.closed = true;
    this.greeting?.(false);
    this.greeting = null;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err.unavailable('QMP connection closed'));
    }
    this.pending.clear();
  }
}
