/**
 * Tells a lost acknowledged write from one never stored, while it is still inside JetStream's duplicate
 * window (2 min). It follows the event log as it is appended; a `stepDone` fact with no effect outcome of
 * its task since the one before means the runStep outcome its machine took is missing (an outcome reaches
 * the machine only once the log acknowledged it: agent/effects.ts). That outcome's Nats-Msg-Id is
 * known (`<instance>:<effect index>:<step kind>`), so the same id is published once more, as a `probe`
 * record of that sandbox: JetStream answering "duplicate" names the sequence it stored the first copy at
 * (and what the stream holds there now is printed); a fresh sequence means it never had it.
 */
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { encode } from '../../src/bus/codec.ts';
import { followRecords, type EventRecord } from '../../src/bus/eventlog-reader.ts';
import { EVENTS_STREAM, subjects } from '../../src/bus/subjects.ts';

interface TaskTrack {
  instance: string;
  outcomes: number;
  /** An effect outcome was appended since the last stepDone. */
  fresh: boolean;
}

export interface LostWriteProbe {
  /** Stops following; resolves with one line per missing outcome found, and what the probe showed. */
  stop(): Promise<string[]>;
}

/** What the event stream holds at `seq`: `<subject> <Nats-Msg-Id>`, or nothing and why (for failure reports). */
export async function heldAt(jsm: JetStreamManager, seq: number): Promise<string> {
  const m = await jsm.streams.getMessage(EVENTS_STREAM, { seq }).catch((e: Error) => e);
  return m instanceof Error || !m
    ? `nothing (${m?.message ?? 'no message'})`
    : `${m.subject} ${m.header.get('Nats-Msg-Id')}`;
}

export async function probeLostWrites(nc: NatsConnection): Promise<LostWriteProbe> {
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const feed = await followRecords(nc, {});
  const tasks = new Map<string, TaskTrack>();
  const found: Promise<string>[] = [];

  const probe = async (r: EventRecord, msgId: string): Promise<string> => {
    const what = `${r.node}/${r.sandbox.slice(0, 12)}: stepDone #${r.seq} (${String(r.step)}) without outcome ${msgId}`;
    try {
      const ack = await js.publish(subjects.evt(r.node, r.sandbox, 'probe'), encode({ node: r.node, probe: msgId }), {
        msgID: msgId,
        timeout: 10_000,
      });
      if (!ack.duplicate) return `${what}: never stored (the probe was stored fresh at #${ack.seq})`;
      return `${what}: JetStream took it as a duplicate of #${ack.seq}, which holds ${await heldAt(jsm, ack.seq)}`;
    } catch (e) {
      return `${what}: the probe failed: ${(e as Error).message}`;
    }
  };

  const follow = (async () => {
    for await (const r of feed) {
      if (!r.taskId) continue;
      const key = `${r.node}/${r.taskId}`;
      const ev = r.event as { type?: string; instance?: string } | undefined;
      if (r.kind === 'input' && ev?.type === 'create') {
        tasks.set(key, { instance: ev.instance ?? r.taskId, outcomes: 0, fresh: false });
        continue;
      }
      const t = tasks.get(key);
      if (!t) continue;
      if (r.kind === 'input' && typeof r.effect === 'string') {
        t.outcomes++;
        t.fresh = true;
      } else if (r.kind === 'stepDone') {
        if (!t.fresh) found.push(probe(r, `${t.instance}:${t.outcomes++}:${String(r.step)}`));
        t.fresh = false;
      }
    }
  })();

  return {
    async stop() {
      feed.stop();
      await follow.catch(() => undefined); // a feed stopped mid-read ends its loop with an error: nothing lost here
      return Promise.all(found);
    },
  };
}
