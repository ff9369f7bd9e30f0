/**
 * Event records: what CORRAL_EVENTS holds, decoded, with the stream sequence. Read from JetStream
 * (one sandbox, one node, or all) or from an exported file (JSON lines, one record per line, so a
 * history can be attached to a bug report and replayed with no NATS at all).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { jetstream, DeliverPolicy } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { err } from '../errors.ts';
import { decode } from '../bus/codec.ts';
import { retrying } from '../bus/retry.ts';
import { EVENTS_STREAM, subjects } from '../bus/subjects.ts';
import type { LogRecord } from '../bus/retention.ts';

/** A record as read back: the log record (see src/bus/retention.ts) plus its subject. */
export interface EventRecord extends LogRecord {
  subject: string;
}

export interface ReadFilter {
  node?: string;
  sandbox?: string;
  /** First stream sequence to read. */
  sinceSeq?: number;
  /** First time to read (epoch ms); ignored when sinceSeq is set. */
  sinceTime?: number;
}

export function filterSubject(f: ReadFilter): string {
  if (!f.node)
    return f.sandbox ? `${subjects.evtAll().slice(0, -1)}*.${f.sandbox.replaceAll('.', '~')}.>` : subjects.evtAll();
  return subjects.evt(f.node, f.sandbox ?? '*', '>');
}

/**
 * Every record matching the filter, in stream order, up to the stream's last sequence at call time.
 * A read interrupted by a failover (a server of the cluster killed, a stream leader being elected)
 * goes on from the record after the last one it got, with back-off, until `deadlineMs` has passed;
 * then `Unavailable`. It never returns fewer records than the stream holds.
 */
export async function readRecords(
  nc: NatsConnection,
  f: ReadFilter = {},
  opts: { deadlineMs?: number } = {},
): Promise<EventRecord[]> {
  const js = jetstream(nc);
  const out: EventRecord[] = [];
  let last: number | undefined;
  await retrying(
    `read the event log (${EVENTS_STREAM})`,
    async () => {
      if (last === undefined) {
        const info = await (await js.streams.get(EVENTS_STREAM)).info(false);
        if (info.state.messages === 0) return;
        last = info.state.last_seq;
      }
      await readFrom(js, f, out, last);
    },
    opts,
  );
  return out;
}

/** One ordered consumer's pass, appending to `out` from the record after its last, until complete. */
async function readFrom(
  js: ReturnType<typeof jetstream>,
  f: ReadFilter,
  out: EventRecord[],
  last: number,
): Promise<void> {
  const from = out.at(-1)?.seq;
  const start =
    from !== undefined
      ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from + 1 }
      : f.sinceSeq !== undefined
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, f.sinceSeq) }
        : f.sinceTime !== undefined
          ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: new Date(f.sinceTime).toISOString() }
          : {};
  const c = await js.consumers.get(EVENTS_STREAM, { filter_subjects: filterSubject(f), ...start });
  try {
    for (;;) {
      const m = await c.next({ expires: 1000 });
      if (!m) {
        // Nothing within a second: none left to read, or the stream is between leaders (ask again).
        if ((await c.info(false)).num_pending === 0) return;
        continue;
      }
      out.push(toRecord(m.seq, m.subject, m.data));
      if (m.seq >= last || m.info.pending === 0) return;
    }
  } finally {
    await c.delete().catch(() => {
      // An ordered consumer: the server removes it by itself after 5 min without use.
    });
  }
}

export function toRecord(seq: number, subject: string, data: Uint8Array): EventRecord {
  const body = decode(data) as Record<string, unknown>;
  return { ...body, seq, subject } as EventRecord;
}

export function writeRecordsFile(path: string, records: EventRecord[]): void {
  writeFileSync(path, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
}

export function readRecordsFile(path: string): EventRecord[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw err.notFound(`cannot read ${path}: ${(e as Error).message}`);
  }
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map((l, i) => {
      try {
        const r = JSON.parse(l) as EventRecord;
        if (typeof r.seq !== 'number' || typeof r.kind !== 'string') throw new Error('missing seq or kind');
        return r;
      } catch (e) {
        throw err.invalid(`${path}:${i + 1}: not an event record: ${(e as Error).message}`);
      }
    });
}
