/**
 * A CLI command's end of a process's stdio: its output subjects to the local stdout/stderr, the local
 * stdin to its stdin (`-i`, with back-pressure: bus/stdin-client.ts), and with `-t` the local terminal in
 * raw mode (Ctrl-C is a byte for the guest's terminal, not a signal here) and its size passed on at
 * start and on every resize. What `docker run -it` does, over NATS.
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { ensureError } from '../errors.ts';
import { pumpStdin } from '../bus/stdin-client.ts';
import { subjects } from '../bus/subjects.ts';
import type { Io } from './io.ts';

export interface Attach {
  node: string;
  id: string;
  execId?: string;
  stdin: boolean;
  tty: boolean;
}

/** Subscribes to the process's output (call before it starts, to see everything). */
export function attachOutput(nc: NatsConnection, a: { node: string; id: string; execId?: string }, io: Io) {
  const subs: Subscription[] = (['stdout', 'stderr'] as const).map((fd) =>
    nc.subscribe(a.execId ? subjects.execIo(a.node, a.id, a.execId, fd) : subjects.io(a.node, a.id, fd), {
      callback: (e, m) => {
        if (!e) (fd === 'stdout' ? io.stdout : io.stderr)(m.data);
      },
    }),
  );
  return { close: () => subs.forEach((s) => s.unsubscribe()) };
}

/**
 * Once the process runs: feed stdin, put the terminal in raw mode, pass its size on. `resize` is the
 * Task API call (width = columns, height = rows). `close` restores the terminal and stops feeding.
 */
export function attachInput(
  nc: NatsConnection,
  a: Attach,
  io: Io,
  resize: (size: { width: number; height: number }) => Promise<unknown>,
) {
  const input = io.stdin;
  const tty = a.tty && input?.isTTY === true && typeof input.setRawMode === 'function';
  const out = process.stdout;
  const sendSize = () => {
    if (!out.isTTY) return;
    resize({ width: out.columns, height: out.rows }).catch((e: unknown) => {
      io.err(`corral: resize failed: ${ensureError(e).message}`);
    });
  };
  if (tty) input.setRawMode(true);
  if (a.tty) {
    sendSize();
    out.on('resize', sendSize);
  }
  const fed =
    a.stdin && input
      ? pumpStdin(nc, { node: a.node, taskId: a.id, execId: a.execId }, input).catch((e: unknown) => {
          const ce = ensureError(e);
          // The process may end before its stdin does: what it no longer reads is not an error.
          if (ce.code !== 'NotFound' && ce.code !== 'FailedPrecondition') io.err(`corral: stdin: ${ce.message}`);
          return 0;
        })
      : Promise.resolve(0);
  return {
    fed,
    close() {
      out.off('resize', sendSize);
      if (tty) input.setRawMode(false);
      input?.pause();
    },
  };
}
