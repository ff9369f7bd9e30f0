/** Connecting to a unix socket that a just-spawned QEMU is about to create. */
import { createConnection, type Socket } from 'node:net';
import { err } from '../../errors.ts';

export interface ConnectOptions {
  /** Epoch ms after which connecting gives up with Timeout. */
  deadlineMs: number;
  signal?: AbortSignal;
  /** Checked between attempts: false ends the retries with Unavailable (the server process died). */
  alive?: () => boolean;
  /** @default 20 */
  retryMs?: number;
}

/**
 * Connect to `path`, retrying while it does not exist or refuses (the server has not bound it yet).
 * Rejects with Timeout at the deadline, with the signal's reason on abort, Unavailable when `alive()` turns false.
 */
export async function connectUnix(path: string, o: ConnectOptions): Promise<Socket> {
  for (;;) {
    if (o.signal?.aborted) throw o.signal.reason;
    if (o.alive && !o.alive()) throw err.unavailable(`${path}: the server process exited`);
    if (Date.now() >= o.deadlineMs) throw err.timeout(`${path}: not accepting connections before the deadline`);
    const sock = await new Promise<Socket | null>((resolve) => {
      const s = createConnection(path);
      const timer = setTimeout(
        () => {
          s.destroy();
          resolve(null);
        },
        Math.max(1, Math.min(1000, o.deadlineMs - Date.now())),
      );
      s.once('connect', () => {
        clearTimeout(timer);
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('error', () => {
        clearTimeout(timer);
        s.destroy();
        resolve(null);
      });
    });
    if (sock && o.signal?.aborted) {
      sock.destroy();
      throw o.signal.reason;
    } // aborted while connecting
    if (sock) return sock;
    await new Promise((r) => setTimeout(r, o.retryMs ?? 20));
  }
}
