/**
 * Guest output onto NATS, with back-pressure (docs/guest-agent.md, "Output back-pressure"): a process's
 * output goes to `io.<container>.<fd>` (an exec's to `io.<container>.exec.<execId>.<fd>`). While more than
 * MAX_UNFLUSHED bytes of a VM's output were published and not yet confirmed by a flush (the server has
 * them), the driver stops reading that VM's guest: the guest buffers, then its processes block on write.
 * So a guest that floods stdout, or a NATS outage (the client buffers until it reconnects), never grows
 * the worker's memory past that bound. Output that cannot be published (the connection closed) is dropped
 * and counted per process, logged the first time, and reported by `scan`; never silently.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { subjects } from '../../bus/subjects.ts';
import type { Log } from '../../log.ts';
import { keyOf } from './agent-frames.ts';
import type { Hypervisor } from './hypervisor.ts';

export const MAX_UNFLUSHED = 1 << 20;

export function publishOutput(nc: NatsConnection, node: string, hv: Hypervisor, log?: Log) {
  const unflushed = new Map<string, number>();
  const held = new Set<string>();
  const dropped = new Map<string, number>();
  let flushing = false;

  const flush = async () => {
    if (flushing) return;
    flushing = true;
    try {
      while (held.size) {
        const sent = new Map(unflushed);
        await nc.flush().catch(() => undefined); // closed: nothing more will be published anyway
        for (const [sid, n] of sent) unflushed.set(sid, (unflushed.get(sid) ?? 0) - n);
        for (const sid of [...held]) {
          if ((unflushed.get(sid) ?? 0) > MAX_UNFLUSHED && !nc.isClosed()) continue;
          held.delete(sid);
          hv.setReading(sid, true);
        }
      }
    } finally {
      flushing = false;
    }
  };

  const drop = (key: string, bytes: number, e: unknown) => {
    const before = dropped.get(key) ?? 0;
    dropped.set(key, before + bytes);
    if (before === 0) log?.warn({ err: e, process: key }, `output of ${key} dropped: it cannot be published`);
  };

  hv.on('output', (sid, containerId, fd, data, execId) => {
    const stream = fd === 1 ? 'stdout' : 'stderr';
    const subject =
      execId === undefined
        ? subjects.io(node, containerId, stream)
        : subjects.execIo(node, containerId, execId, stream);
    try {
      nc.publish(subject, data);
    } catch (e) {
      drop(keyOf({ containerId, execId }), data.length, e);
      return;
    }
    const n = (unflushed.get(sid) ?? 0) + data.length;
    unflushed.set(sid, n);
    if (n <= MAX_UNFLUSHED || held.has(sid)) return;
    held.add(sid);
    hv.setReading(sid, false);
    void flush();
  });
  hv.on('vmExit', (e) => unflushed.delete(e.sandboxId));

  return {
    /** Bytes of output dropped, per process key (`container` or `container/execId`). */
    dropped: (): Record<string, number> => Object.fromEntries(dropped),
  };
}
