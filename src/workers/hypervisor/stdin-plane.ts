/**
 * The serving side of the stdin data plane (`StdinChunk`, domain/ops.ts): the hypervisor worker answers
 * each chunk on `io.<container>[.exec.<execId>].stdin` once the driver took it within the guest's window
 * for that process (`Hypervisor.writeStdin`), so a client with a bounded number of chunks in flight never
 * makes the worker buffer more than those chunks.
 *
 * - Chunks are written in `seq` order: one that arrives early (a resend after a reconnect overtook it) waits
 *   for the gap to fill, at most MAX_AHEAD ahead; further is InvalidArgument.
 * - A repeated seq is answered with the first copy's outcome and written once.
 * - `eof` closes the process's stdin after what came before it (containerd's CloseIO).
 * - A process that does not run: FailedPrecondition; its state here is forgotten when it exits.
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { ensureError, err } from '../../errors.ts';
import type { ProcessRef, StdinChunk } from '../../domain/ops.ts';
import { serve } from '../../bus/serve.ts';
import { subjects } from '../../bus/subjects.ts';
import { keyOf } from './agent-frames.ts';
import type { Hypervisor } from './hypervisor.ts';
import { parseStdinChunk } from './validate.ts';

const MAX_AHEAD = 64;
/** Outcomes kept for answering repeats of chunks already written. */
const KEEP = 64;

interface Pending {
  chunk: StdinChunk;
  done: Promise<void>;
  settle: (e?: unknown) => void;
}

interface Stream {
  ref: ProcessRef;
  next: number;
  pending: Map<number, Pending>;
  written: Map<number, Promise<void>>;
  pumping: boolean;
}

export function serveStdin(nc: NatsConnection, node: string, hv: Hypervisor): { subs: Subscription[] } {
  const streams = new Map<string, Stream>();

  const streamOf = (containerId: string, execId: string | undefined): Stream => {
    const key = keyOf({ containerId, execId });
    const known = streams.get(key);
    if (known) return known;
    const vm = hv.list().find((v) => v.processes.includes(key));
    if (!vm) throw err.precondition(`stdin: process ${key} is not running on node ${node}`);
    const s: Stream = {
      ref: { sandboxId: vm.sandboxId, containerId, ...(execId === undefined ? {} : { execId }) },
      next: 0,
      pending: new Map(),
      written: new Map(),
      pumping: false,
    };
    streams.set(key, s);
    return s;
  };

  const pump = async (s: Stream) => {
    if (s.pumping) return;
    s.pumping = true;
    for (let p = s.pending.get(s.next); p; p = s.pending.get(s.next)) {
      try {
        if (p.chunk.data?.length) await hv.writeStdin(s.ref, p.chunk.data);
        if (p.chunk.eof) await hv.closeStdin(s.ref);
        p.settle();
      } catch (e) {
        p.settle(e);
      }
      s.pending.delete(s.next);
      s.written.set(s.next, p.done);
      s.written.delete(s.next - KEEP);
      s.next++;
    }
    s.pumping = false;
  };

  const take = async (containerId: string, execId: string | undefined, c: StdinChunk) => {
    const s = streamOf(containerId, execId);
    const seen = s.pending.get(c.seq)?.done ?? s.written.get(c.seq);
    if (seen) return seen;
    if (c.seq < s.next) return; // written long ago
    if (c.seq - s.next >= MAX_AHEAD)
      throw err.invalid(`stdin: chunk ${c.seq} is more than ${MAX_AHEAD} ahead of ${s.next} (lost chunks?)`);
    let settle!: Pending['settle'];
    const done = new Promise<void>((resolve, reject) => {
      settle = (e) => (e === undefined ? resolve() : reject(ensureError(e)));
    });
    done.catch(() => undefined); // answered through `take`; a repeat may never come
    s.pending.set(c.seq, { chunk: c, done, settle });
    void pump(s);
    return done;
  };

  hv.on('exit', (e) => streams.delete(keyOf(e)));

  // io.<container>.stdin and io.<container>.exec.<execId>.stdin; ids are written with `~` for `.` in subjects.
  const untoken = (t: string | undefined) => (t ?? '').replaceAll('~', '.');
  const [init, exec] = subjects.stdinAll(node);
  const level = init.split('.').indexOf('*');
  const handle = (withExec: boolean) => async (body: unknown, req: { subject: string }) => {
    const t = req.subject.split('.');
    const chunk = parseStdinChunk(isMap(body) ? body : {});
    await take(untoken(t[level]), withExec ? untoken(t[level + 2]) : undefined, chunk);
    return { taken: true };
  };
  return { subs: [serve(nc, init, handle(false)), serve(nc, exec, handle(true))] };
}

const isMap = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
