/**
 * The durable event log: the JetStream stream CORRAL_EVENTS over `corral.v1.evt.>`.
 * Facts (created, started, exited, deleted, ...) and write-ahead inputs (kind `input`) of every
 * sandbox go here.
 *
 * An append resolves once JetStream has stored the record and acknowledged it (PubAck). Every record
 * carries a `Nats-Msg-Id` (the caller's, or `<node>:<log instance>:<n>` made once per record), so an
 * append whose publish or ack was lost (nats-server killed or restarted, connection dropped) is simply
 * published again with the same id until a deadline: JetStream's duplicate window (2 min) stores it at
 * most once, and the ack of a repeat names the first copy's sequence. Records of one sandbox are
 * appended strictly in call order (one after the other is acknowledged), so a retried record can
 * never land after a later one. Past the deadline the append fails with Unavailable. A record appended
 * while a trace span is active carries its `traceId`.
 *
 * Shared messages (a group commit per sandbox): a record of a {@link SHARED_KINDS} kind appended with a
 * {@link Share} may go out in one message with the records of its sandbox appended beside it, on the
 * subject `corral.v1.evt.<node>.<sandbox>.batch`, its body a MessagePack array of the records' maps (each
 * as it would be alone), under one Nats-Msg-Id (see append). Every record of it gets the message's
 * sequence. The agent's journal shares its inputs, states, stepDone facts and the created and started facts:
 * a create's 16 records go out in 7 messages, which nats-server stores (and flushes to disk) once each.
 * eventlog-reader.ts unpacks them, so readers see records as before. Other facts (exited, oom, deleted, ...)
 * never share: a subscription to their subject sees them.
 */
import { randomUUID } from 'node:crypto';
import { jetstreamManager, DiscardPolicy, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { err, type CorralError } from '../errors.ts';
import type { Log } from '../log.ts';
import { Lanes } from '../util/lanes.ts';
import { activeTraceId } from '../util/trace.ts';
import { encode } from './codec.ts';
import { reconnectWatch, type ReconnectWatch } from './connection.ts';
import { jsPublish } from './reply-mux.ts';
import { isConnectionClosed, isNatsTimeout, isNoResponders, isStreamNotFound, jetStreamStatus } from './nats-errors.ts';
import { BATCH_KIND, EVENTS_STREAM, SHARED_KINDS, subjects } from './subjects.ts';

const DAY_MS = 24 * 3600 * 1000;
const ns = (ms: number) => ms * 1_000_000;

/** CORRAL_EVENTS' limits. docs/api.md ("Events") and docs/decisions/0005-durability.md say why. */
export const STREAM_DEFAULTS = {
  /** The log's hard bound: past it the oldest records go (discard old). */
  maxBytes: 1024 ** 3,
  /**
   * A backstop, far beyond any sandbox's retention (src/bus/retention.ts purges a deleted sandbox's
   * records once its retention period has passed): records older than this go even if their sandbox
   * still runs.
   */
  maxAgeMs: 365 * DAY_MS,
  /** How long JetStream remembers a Nats-Msg-Id: a retried append within it is stored once. */
  duplicateWindowMs: 2 * 60 * 1000,
  replicas: 1,
} as const;

export interface StreamLimits {
  /** @default 1 GiB */
  maxBytes?: number;
  /** @default 365 days */
  maxAgeMs?: number;
  /** @default 2 min; must exceed the append deadline */
  duplicateWindowMs?: number;
  /** @default 1 */
  replicas?: number;
}

export function eventStreamConfig(limits: StreamLimits = {}) {
  return {
    name: EVENTS_STREAM,
    subjects: [subjects.evtAll()],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    max_bytes: limits.maxBytes ?? STREAM_DEFAULTS.maxBytes,
    max_age: ns(limits.maxAgeMs ?? STREAM_DEFAULTS.maxAgeMs),
    num_replicas: limits.replicas ?? STREAM_DEFAULTS.replicas,
    duplicate_window: ns(limits.duplicateWindowMs ?? STREAM_DEFAULTS.duplicateWindowMs),
  };
}

/** Create CORRAL_EVENTS, or bring an existing one's limits to these (storage and retention cannot change). */
export async function ensureEventStream(nc: NatsConnection, limits: StreamLimits = {}): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const cfg = eventStreamConfig(limits);
  try {
    await jsm.streams.info(EVENTS_STREAM);
  } catch (e) {
    if (!isStreamNotFound(e)) throw err.unavailable(`JetStream unavailable: ${(e as Error).message}`, e);
    await jsm.streams.add(cfg);
    return;
  }
  await jsm.streams.update(EVENTS_STREAM, {
    subjects: cfg.subjects,
    max_bytes: cfg.max_bytes,
    max_age: cfg.max_age,
    discard: cfg.discard,
    duplicate_window: cfg.duplicate_window,
  });
}

export interface AppendPolicy {
  /** An append that is not acknowledged within this long fails with Unavailable. @default 30 s */
  deadlineMs?: number;
  /** How long one publish waits for its ack before it is sent again. @default 5 s */
  attemptTimeoutMs?: number;
  /** Back-off between attempts: first delay and cap, doubling. A reconnect cuts the wait short. @default [50, 1000] */
  backoffMs?: readonly [number, number];
  /** Where an append stored only after a retry is said, with the sequence its ack named (rare: faults). */
  log?: Pick<Log, 'warn'>;
  /** How long a `wait` record waits for a later record of its sandbox to share its message. @default 50 ms */
  shareWaitMs?: number;
}

/** A shared message's records stay under this (decode's limit is 512 KiB); a record past it goes alone. */
const BATCH_MAX_BYTES = 256 * 1024;

/** One record waiting in a shared message. */
interface Shared {
  kind: string;
  /** The id is the caller's (append's msgId): the message takes it, and no later record joins. */
  ownId: boolean;
  body: Uint8Array;
  id: string;
  deadline: number;
  hold?: HoldOptions;
  resolve: (seq: number) => void;
  reject: (e: unknown) => void;
}

/** The records of a sandbox that will go out in one message (open to more while it is the sandbox's in `open`). */
interface Group {
  entries: Shared[];
  bytes: number;
  waits: boolean;
  wake?: () => void;
}

/**
 * Errors after which the same publish may succeed: the server was unreachable, restarting or slow.
 * By class and code (src/bus/nats-errors.ts): a timeout; no responders (JetStream not up yet, which
 * nats.js reports as JetStreamNotEnabled with the no-responders RequestError as its cause); a
 * JetStream API error with status 503 ("JetStream system temporarily unavailable"). Not a closed or
 * draining connection, nor anything else (a refused publish is refused again).
 */
export function isTransientPublishError(e: unknown): boolean {
  if (isConnectionClosed(e)) return false;
  return isNatsTimeout(e) || isNoResponders(e) || jetStreamStatus(e) === 503;
}

/**
 * How a record may share its message (records of other kinds, or without this, go alone, as they come):
 * - `join`: with the records of its sandbox waiting to go; it goes as soon as the sandbox's lane is free;
 * - `wait`: the same, but it waits up to `shareWaitMs` for a later record of its sandbox to go with;
 * - `close`: like `join`, and no later record shares its message, so its sequence covers the records up to
 *   it and none after (a snapshot's starting point).
 */
export type Share = 'join' | 'wait' | 'close';

/** What a writer of the log needs of it: the agent's parts take this (the simulator passes an in-memory log). */
export type EventAppender = Pick<EventLog, 'append'>;

/**
 * An append that must be stored (a write-ahead input): past the deadline it keeps its sandbox's lane and
 * goes on sending the same record (back-off capped at 5 s), so that nothing of that sandbox can be stored
 * before it, until it is stored, `signal` aborts or `stop()` says so (then it fails as usual).
 */
export interface HoldOptions {
  signal?: AbortSignal;
  stop?: () => boolean;
  /** Each time the deadline passes and it goes on (for the log). */
  onRetry?: (e: CorralError) => void;
}

export class EventLog {
  /** Per-sandbox lanes keep appends in order without serialising different sandboxes. */
  private readonly lanes = new Lanes();
  /** Ids are `<node>:<instance>:<n>`: unique across restarts of the agent (a counter alone is not). */
  private readonly instance = randomUUID();
  private n = 0;
  /** Publishes sent again (after a timeout, a reconnect, or no responders): for tests and metrics. */
  retries = 0;
  private readonly deadlineMs: number;
  private readonly attemptTimeoutMs: number;
  private readonly backoff: readonly [number, number];
  /** A publish in flight across a reconnect is presumed lost and sent again at once. */
  private readonly reconnects: ReconnectWatch;
  private readonly log?: Pick<Log, 'warn'>;
  private readonly shareWaitMs: number;
  /** Per sandbox, the shared message still open to more records. */
  private readonly open = new Map<string, Group>();

  constructor(
    private nc: NatsConnection,
    private node: string,
    policy: AppendPolicy = {},
  ) {
    this.deadlineMs = policy.deadlineMs ?? 30_000;
    this.attemptTimeoutMs = policy.attemptTimeoutMs ?? 5_000;
    this.backoff = policy.backoffMs ?? [50, 1000];
    this.reconnects = reconnectWatch(nc);
    this.log = policy.log;
    this.shareWaitMs = policy.shareWaitMs ?? 50;
  }

  /** The Nats-Msg-Id the next append without one gets (exposed for tests and logs). */
  nextMsgId(): string {
    return `${this.node}:${this.instance}:${this.n + 1}`;
  }

  /**
   * Append one record; resolves with its stream sequence once JetStream has stored it. `msgId` is the
   * record's idempotency key (default: a fresh one): give the same one to store a record at most once
   * across your own retries, too. A record with its own id that shares a message (`share`, for a
   * {@link SHARED_KINDS} kind) is the last of it, and the message is sent under that id: a repeat of the
   * record (an agent that recovered and runs the effect again) is then stored at most once, alone or with
   * the same records before it (which replay made again). A message without such a record takes its first
   * record's id.
   */
  append(
    sandbox: string,
    kind: string,
    data: Record<string, unknown>,
    msgId?: string,
    hold?: HoldOptions,
    share?: Share,
  ): Promise<number> {
    const subject = subjects.evt(this.node, sandbox, kind);
    const traceId = activeTraceId(); // appended while a span is active: the record names its trace
    const body = encode({ node: this.node, sandbox, kind, at: Date.now(), ...(traceId ? { traceId } : {}), ...data });
    const id = msgId ?? `${this.node}:${this.instance}:${++this.n}`;
    const deadline = Date.now() + this.deadlineMs;
    if (share && SHARED_KINDS.has(kind) && body.length <= BATCH_MAX_BYTES)
      return this.share(sandbox, { kind, ownId: msgId !== undefined, body, id, deadline, hold }, share);
    this.seal(sandbox);
    return this.lanes.run(sandbox, () => this.publish(subject, body, id, deadline, hold));
  }

  /**
   * Sends the records waiting to share a message now, and resolves once every append made so far has
   * settled, or after `maxMs` (a held append may wait for JetStream longer): call it before draining the
   * connection, or a `wait` record would go out after the drain began.
   */
  async flush(maxMs = 5000): Promise<void> {
    for (const sandbox of [...this.open.keys()]) this.seal(sandbox);
    let t: NodeJS.Timeout | undefined;
    await Promise.race([this.lanes.idle(), new Promise<void>((r) => (t = setTimeout(r, maxMs)))]);
    clearTimeout(t);
  }

  /** No later record joins the sandbox's open message, which goes out as soon as its lane is free. */
  private seal(sandbox: string): void {
    const g = this.open.get(sandbox);
    if (!g) return;
    this.open.delete(sandbox);
    g.wake?.();
  }

  private share(sandbox: string, e: Omit<Shared, 'resolve' | 'reject'>, how: Share): Promise<number> {
    if ((this.open.get(sandbox)?.bytes ?? 0) + e.body.length > BATCH_MAX_BYTES) this.seal(sandbox);
    let g = this.open.get(sandbox);
    if (!g) {
      const fresh: Group = { entries: [], bytes: 0, waits: false };
      this.open.set(sandbox, fresh);
      void this.lanes
        .run(sandbox, () => this.sendGroup(sandbox, fresh))
        .catch(() => {
          // Each record's own promise carries the outcome.
        });
      g = fresh;
    }
    const p = new Promise<number>((resolve, reject) => g.entries.push({ ...e, resolve, reject }));
    g.bytes += e.body.length;
    g.waits = how === 'wait';
    if (how === 'close' || e.ownId) this.seal(sandbox);
    else if (how === 'join') g.wake?.();
    return p;
  }

  /** A shared message once its lane is free (and a `wait` record has waited): one record alone goes as itself. */
  private async sendGroup(sandbox: string, g: Group): Promise<void> {
    if (this.open.get(sandbox) === g && g.waits) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, this.shareWaitMs);
        g.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    if (this.open.get(sandbox) === g) this.seal(sandbox);
    const es = g.entries;
    const one = es.length === 1;
    const subject = subjects.evt(this.node, sandbox, one ? es[0]!.kind : BATCH_KIND);
    const body = one
      ? es[0]!.body
      : batchBody(
          es.map((x) => x.body),
          g.bytes,
        );
    const hold = holdOfAll(es);
    try {
      const id = (es.find((x) => x.ownId) ?? es[0]!).id;
      const seq = await this.publish(subject, body, id, Math.min(...es.map((x) => x.deadline)), hold);
      for (const x of es) x.resolve(seq);
    } catch (e) {
      for (const x of es) x.reject(e);
    }
  }

  /** Publish until acknowledged or the deadline passes (held: see HoldOptions); the same id every time. */
  private async publish(
    subject: string,
    body: Uint8Array,
    msgID: string,
    deadline: number,
    hold?: HoldOptions,
  ): Promise<number> {
    let last: unknown;
    for (let attempt = 0; ; attempt++) {
      if (this.nc.isClosed()) throw err.unavailable(`event log append failed: NATS connection closed`, last);
      let left = deadline - Date.now();
      if (attempt > 0 && left <= 0) {
        if (!hold || hold.signal?.aborted || hold.stop?.()) break;
        hold.onRetry?.(err.unavailable(`event log append not acknowledged within ${this.deadlineMs} ms`, last));
        deadline = Date.now() + Math.min(this.deadlineMs, 5000);
        left = deadline - Date.now();
      }
      if (attempt > 0) this.retries++;
      const epoch = this.reconnects.epoch;
      const reconnected = this.reconnects.next();
      const p = jsPublish(this.nc, subject, body, {
        msgId: msgID,
        timeoutMs: Math.max(100, Math.min(this.attemptTimeoutMs, left)),
      });
      p.catch(() => {
        // Abandoned if a reconnect comes first; otherwise its outcome is read by the race below.
      });
      const r = await Promise.race([
        p.then(
          (ack) => ({ ack }),
          (e: unknown) => ({ e }),
        ),
        reconnected.then(() => ({ reconnected: true as const })),
      ]);
      if ('ack' in r && r.ack.duplicate && r.ack.seq === 0) {
        // "A duplicate of a write still being proposed" (nats-server 2.10, clustered): not stored yet, and a
        // leader change can drop that proposal, which is then never stored (seen in the partition suite; fixed
        // upstream by nats-server PRs 5827 and 6415). Only a sequence says it is stored: send it again.
        last = new Error('JetStream took it for a duplicate of a write not yet stored (sequence 0)');
      } else if ('ack' in r) {
        // Which record the stream says it stored, when a fault came between: a write later missing from the
        // log (a lost acknowledged write) can then be told from one never acknowledged.
        if (attempt > 0) {
          const { seq, duplicate } = r.ack;
          this.log?.warn(
            { subject, msgId: msgID, seq, duplicate, attempts: attempt + 1 },
            'event log append stored after a retry',
          );
        }
        return r.ack.seq;
      } else if ('e' in r) {
        last = r.e;
        if (!isTransientPublishError(r.e))
          throw err.unavailable(`event log append failed: ${(r.e as Error).message}`, r.e);
      }
      // A reconnect since this attempt began: the publish or its ack was likely lost; send it again now.
      if (this.reconnects.epoch !== epoch) continue;
      const pause = Math.min(this.backoff[1], this.backoff[0] * 2 ** attempt, Math.max(0, deadline - Date.now()));
      await Promise.race([new Promise((r2) => setTimeout(r2, pause)), this.reconnects.next()]);
    }
    const why = last instanceof Error ? last.message : 'no acknowledgement';
    throw err.unavailable(`event log append failed: not acknowledged within ${this.deadlineMs} ms (${why})`, last);
  }
}

/** A MessagePack array of already encoded maps: the header, then the maps as they are. */
function batchBody(parts: Uint8Array[], bytes: number): Uint8Array {
  const n = parts.length;
  const head = n < 16 ? [0x90 | n] : [0xdc, n >> 8, n & 0xff];
  const out = new Uint8Array(head.length + bytes);
  out.set(head, 0);
  let at = head.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A shared message is held while any of its records is (HoldOptions), and tells each one's onRetry. */
function holdOfAll(es: readonly Shared[]): HoldOptions | undefined {
  const holds = es.map((e) => e.hold).filter((h): h is HoldOptions => h !== undefined);
  if (holds.length === 0) return undefined;
  if (holds.length === 1) return holds[0];
  return {
    stop: () => holds.every((h) => h.signal?.aborted || h.stop?.()),
    onRetry: (e) => holds.forEach((h) => h.onRetry?.(e)),
  };
}
