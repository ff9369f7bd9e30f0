/**
 * The sending side of the stdin data plane (`StdinChunk`, domain/ops.ts): bytes from any source go to
 * a process's stdin subject in chunks of at most 64 KiB, numbered from 0, with at most `window` chunks
 * unanswered. The hypervisor worker answers a chunk once the guest has room for it, so a source faster
 * than the process waits here (its own reads pause) instead of growing anyone's memory. End of input
 * sends `eof` (containerd's CloseIO): the process reads EOF once what came before is written.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { StdinChunk } from '../domain/ops.ts';
import { ensureError } from '../errors.ts';
import { request } from './rpc.ts';
import { subjects } from './subjects.ts';

export const STDIN_CHUNK = 64 * 1024;

export interface StdinTarget {
  node: string;
  taskId: string;
  execId?: string;
}

export interface PumpOptions {
  /** Chunks in flight at once. @default 4 (256 KiB: the guest's stdin window) */
  window?: number;
  /** Per-chunk deadline: a process that reads nothing for this long fails the pump. @default 1 day */
  chunkTimeoutMs?: number;
  /** Send `eof` when the source ends. @default true */
  eof?: boolean;
}

/** Sends `source` to the process's stdin; resolves with the byte count once every chunk was taken. */
export async function pumpStdin(
  nc: NatsConnection,
  to: StdinTarget,
  source: AsyncIterable<Uint8Array>,
  o: PumpOptions = {},
): Promise<number> {
  const subject = subjects.stdin(to.node, to.taskId, to.execId);
  const timeout = o.chunkTimeoutMs ?? 24 * 3600_000;
  const window = Math.max(1, o.window ?? 4);
  const inFlight = new Set<Promise<unknown>>();
  let seq = 0;
  let bytes = 0;
  let failed: Error | undefined;
  // A repeated seq is answered again without a second write: resending on reconnect is safe.
  const send = async (c: StdinChunk) => {
    const p = request(nc, subject, c, timeout, { resendOnReconnect: true });
    inFlight.add(p);
    p.then(
      () => inFlight.delete(p),
      (e: unknown) => {
        inFlight.delete(p);
        failed ??= ensureError(e);
      },
    );
    if (inFlight.size >= window) await Promise.race(inFlight).catch(() => undefined);
    if (failed !== undefined) throw failed; // a refused chunk (process gone, bad request) ends the pump
  };
  for await (const buf of source) {
    for (let at = 0; at < buf.length; at += STDIN_CHUNK) {
      const data = buf.subarray(at, at + STDIN_CHUNK);
      bytes += data.length;
      await send({ seq: seq++, data });
    }
  }
  await Promise.allSettled(inFlight);
  if (failed !== undefined) throw failed;
  if (o.eof ?? true) await request(nc, subject, { seq, eof: true } satisfies StdinChunk, timeout);
  return bytes;
}
