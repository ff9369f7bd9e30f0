/**
 * The one reader of the event log CORRAL_EVENTS (eventlog.ts is its writer). Every part that reads
 * records goes through here: recovery (the agent), the retention janitor (retention.ts), `corral
 * events` and `corral replay`, the fleet's recreate-on-drain. Records come back decoded, with their
 * stream sequence and subject, in stream order.
 *
 * {@link readRecords} reads what is there, up to the stream's last sequence at call time, across
 * failovers; {@link followRecords} then follows what is appended. Both use ordered consumers (no state
 * left on the server: the consumer is deleted after a read, and an abandoned one expires).
 *
 * A consumer filtered on part of the stream (`corral.v1.evt.<node>.*.>`) is delivered about 25 times slower by
 * nats-server than one on the whole stream (measured here on 2.10.27: 21,000 records of 1,000 sandboxes in
 * 6.3 s against 0.25 s), so a read whose filter matches at least half of the stream reads the whole stream
 * and keeps the matching records itself (at most twice the records, for a read many times faster).
 *
 * A shared message (eventlog.ts: `<sandbox>.batch`, the journal's inputs, states and stepDone facts sent
 * together) comes back as its records, each with the message's sequence and the subject it would have had
 * alone. A read of one of those kinds therefore asks the server for all of the sandbox's (or node's) kinds
 * and keeps the matching records itself.
 */
import { DeliverPolicy, jetstream, type Consumer, type OrderedConsumerOptions } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { decode } from './codec.ts';
import { drainConsumer } from './drain-consumer.ts';
import { err } from '../errors.ts';
import { retrying } from './retry.ts';
import { BATCH_KIND, EVENTS_STREAM, SHARED_KINDS, subjects } from './subjects.ts';

/** One record of CORRAL_EVENTS, decoded, with its stream sequence (`EventRecord` adds the subject). */
export interface LogRecord {
  seq: number;
  node: string;
  sandbox: string;
  /** `input`, `state`, `worker`, `orphan`, or a fact: created, started, exited, deleted, rolledBack, stepDone. */
  kind: string;
  /** Epoch ms when the agent appended it. */
  at: number;
  taskId?: string;
  /** The trace the record was appended in (a span was active), when tracing is on. */
  traceId?: string;
  [field: string]: unknown;
}

/** A record as read back: the log record plus its subject. */
export interface EventRecord extends LogRecord {
  subject: string;
}

/** Which records: every part left out matches all (all nodes, all sandboxes, every kind). */
export interface ReadFilter {
  node?: string;
  sandbox?: string;
  /** One record kind (`deleted`, `input`, ...). */
  kind?: string;
  /** First stream sequence to read. */
  sinceSeq?: number;
  /** First time to read (epoch ms); ignored when sinceSeq is set. */
  sinceTime?: number;
}

export interface ReadOptions {
  /** A read interrupted by a failover goes on until this long has passed, then Unavailable. @default 30 s */
  deadlineMs?: number;
  /**
   * Called for a record that does not decode, which is then skipped: every Corral writer encodes with
   * codec.ts, so such a record is not Corral's, and it must not stop recovery or the janitor for good.
   */
  onUndecodable?: (seq: number, subject: string, e: unknown) => void;
}

/** The stream subject filter for `f`: `corral.v1.evt.<node|*>.<sandbox|*>.<kind|>>`. */
export function filterSubject(f: Pick<ReadFilter, 'node' | 'sandbox' | 'kind'>): string {
  if (f.node === undefined && f.sandbox === undefined && f.kind === undefined) return subjects.evtAll();
  return subjects.evt(f.node ?? '*', f.sandbox ?? '*', f.kind ?? '>');
}

/** The subject filter the server is asked for: a kind that may be in a shared message widens to every kind. */
function serverFilter(f: Pick<ReadFilter, 'node' | 'sandbox' | 'kind'>): string {
  return f.kind !== undefined && SHARED_KINDS.has(f.kind) ? filterSubject({ ...f, kind: undefined }) : filterSubject(f);
}

const BATCH_SUFFIX = `.${BATCH_KIND}`;

/** A record from its stream message. @throws when `data` is not MessagePack. */
export function toRecord(seq: number, subject: string, data: Uint8Array): EventRecord {
  return complete(decode(data), seq, subject);
}

/** A record body (a new object: completed in place, not copied). */
function complete(body: unknown, seq: number, subject: string): EventRecord {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return { seq, subject } as EventRecord;
  const r = body as EventRecord;
  r.seq = seq;
  r.subject = subject;
  return r;
}

/**
 * The records of a stream message that `keep` matches (by the subject each would have alone): one, or a
 * shared message's several. @throws when `data` is not MessagePack.
 */
export function toRecords(
  seq: number,
  subject: string,
  data: Uint8Array,
  keep: (subject: string) => boolean = () => true,
): EventRecord[] {
  if (!subject.endsWith(BATCH_SUFFIX)) return keep(subject) ? [toRecord(seq, subject, data)] : [];
  const body = decode(data);
  if (!Array.isArray(body)) return keep(subject) ? [complete(body, seq, subject)] : [];
  const base = subject.slice(0, -BATCH_KIND.length);
  const out: EventRecord[] = [];
  for (const b of body as unknown[]) {
    const kind = (b as { kind?: unknown } | null)?.kind;
    const own = typeof kind === 'string' ? base + kind : subject;
    if (keep(own)) out.push(complete(b, seq, own));
  }
  return out;
}

function startOf(f: ReadFilter, afterSeq: number | undefined): Partial<OrderedConsumerOptions> {
  if (afterSeq !== undefined) return { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: afterSeq + 1 };
  if (f.sinceSeq !== undefined)
    return { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, f.sinceSeq) };
  if (f.sinceTime !== undefined)
    return { deliver_policy: DeliverPolicy.StartTime, opt_start_time: new Date(f.sinceTime).toISOString() };
  return { deliver_policy: DeliverPolicy.All };
}

function ordered(nc: NatsConnection, f: ReadFilter, afterSeq: number | undefined, subject = serverFilter(f)) {
  return jetstream(nc).consumers.get(EVENTS_STREAM, { filter_subjects: subject, ...startOf(f, afterSeq) });
}

/**
 * Whether a subject matches a NATS filter (`*`: one token, `>`: one or more at the end), compiled once per
 * filter (a read of the whole stream tests every record's subject).
 */
export function subjectMatcher(filter: string): (subject: string) => boolean {
  const f = filter.split('.');
  const end = f.indexOf('>');
  const toks = (end < 0 ? f : f.slice(0, end)).map((t) =>
    t === '*' ? '[^.]+' : t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
  );
  const re = new RegExp(`^${toks.join('\\.')}${end < 0 ? '' : end === 0 ? '.+' : '\\..+'}$`, 's');
  return (subject) => re.test(subject);
}

/**
 * The consumer a read drains, and which of its records it keeps: the filtered one, or, when that one holds at
 * least half of what the whole stream holds from the same start, one on the whole stream (read faster).
 */
async function readingConsumer(nc: NatsConnection, f: ReadFilter, afterSeq: number | undefined) {
  const subject = serverFilter(f);
  const keep = keeper(f);
  const narrow = await ordered(nc, f, afterSeq);
  if (subject === subjects.evtAll()) return { c: narrow, keep };
  const wide = await ordered(nc, f, afterSeq, subjects.evtAll());
  const [n, w] = await Promise.all([narrow.info(true), wide.info(true)]);
  const drop = n.num_pending * 2 >= w.num_pending ? narrow : wide;
  await drop.delete().catch(() => {
    // An ordered consumer left behind expires on its own (inactive threshold): nothing to report.
  });
  return drop === narrow ? { c: wide, keep: subjectMatcher(filterSubject(f)) } : { c: narrow, keep };
}

/** Which of the records the server's filter delivers the read keeps: all, unless that filter was widened. */
function keeper(f: ReadFilter): (subject: string) => boolean {
  const exact = filterSubject(f);
  return serverFilter(f) === exact ? () => true : subjectMatcher(exact);
}

/** Runs `f` on an ordered consumer made for it, deleted after. */
async function withOrdered<T>(
  nc: NatsConnection,
  f: ReadFilter,
  afterSeq: number | undefined,
  use: (c: Consumer) => Promise<T>,
): Promise<T> {
  const c = await ordered(nc, f, afterSeq);
  try {
    return await use(c);
  } finally {
    await c.delete().catch(() => {
      // An ordered consumer left behind expires on its own (inactive threshold): nothing to report.
    });
  }
}

function push(
  out: EventRecord[],
  seq: number,
  subject: string,
  data: Uint8Array,
  keep: (subject: string) => boolean,
  opts: ReadOptions,
): void {
  try {
    for (const r of toRecords(seq, subject, data, keep)) out.push(r);
  } catch (e) {
    opts.onUndecodable?.(seq, subject, e);
  }
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
  opts: ReadOptions = {},
): Promise<EventRecord[]> {
  const js = jetstream(nc);
  const out: EventRecord[] = [];
  let last: number | undefined;
  /** The last sequence this read has been through (records skipped as undecodable included). */
  let through: number | undefined;
  await retrying(
    `read the event log (${EVENTS_STREAM})`,
    async () => {
      if (last === undefined) {
        const info = await (await js.streams.get(EVENTS_STREAM)).info(false);
        if (info.state.messages === 0) return;
        last = info.state.last_seq;
      }
      const upTo = last;
      const { c, keep } = await readingConsumer(nc, f, through);
      try {
        await drainConsumer(c, (m) => {
          push(out, m.seq, m.subject, m.data, keep, opts);
          through = m.seq;
          return m.seq < upTo;
        });
      } finally {
        await c.delete().catch(() => {
          // An ordered consumer left behind expires on its own (inactive threshold): nothing to report.
        });
      }
      // A drain that ended short of the last sequence may have been told "nothing pending" too early (seen
      // once after a server cut off and healed: 3,188 of 6,585 records, no error): a fresh consumer from
      // there must agree that nothing matching is left, or the read goes on from there.
      if ((through ?? 0) < upTo) {
        const more = await withOrdered(nc, f, through, async (c) => (await c.info(true)).num_pending);
        if (more > 0) throw err.unavailable(`the read ended with ${more} more records pending; reading on`);
      }
    },
    { deadlineMs: opts.deadlineMs },
  );
  return out;
}

/** Records as they are appended, until `stop()`. */
export interface RecordFeed extends AsyncIterable<EventRecord> {
  stop(): void;
}

/**
 * Follow the records matching `f` as they are appended: from the record after `afterSeq` (the last
 * one a {@link readRecords} returned), or, without it, from the filter's own start (`sinceSeq`,
 * `sinceTime`, else the first record).
 */
export async function followRecords(
  nc: NatsConnection,
  f: ReadFilter,
  afterSeq?: number,
  opts: Pick<ReadOptions, 'onUndecodable'> = {},
): Promise<RecordFeed> {
  const messages = await (await ordered(nc, f, afterSeq)).consume();
  const keep = keeper(f);
  return {
    stop: () => void messages.stop(),
    async *[Symbol.asyncIterator]() {
      for await (const m of messages) {
        const got: EventRecord[] = [];
        push(got, m.seq, m.subject, m.data, keep, opts);
        yield* got;
      }
    },
  };
}
