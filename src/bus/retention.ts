/**
 * Retention of the event log: a sandbox's history is kept while the sandbox exists and for a retention
 * period after it ended (`deleted`, or `rolledBack` with nothing left over); then the janitor purges
 * that sandbox's subjects from CORRAL_EVENTS. The stream's own limits (max_bytes, max_age, discard
 * old: eventlog.ts) are the backstop that keeps the log bounded whatever happens here.
 *
 * Two parts: {@link sandboxesToPurge}, a pure decision over records, and {@link runRetention}, which
 * reads what the decision needs, decides, and purges (`jsm.streams.purge(CORRAL_EVENTS, { filter,
 * seq })`). The agent calls `runRetention` periodically.
 *
 * Sandbox ids can be reused: a new sandbox with the id of a deleted one starts with its own create
 * input. A purge only ever removes records up to the end of the finished sandbox (never the newer
 * one's), and is bounded by a stream sequence, so a sandbox created while the janitor runs is safe.
 */
import { DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { err } from '../errors.ts';
import { decode } from './codec.ts';
import { EVENTS_STREAM, PREFIX, subjects } from './subjects.ts';

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
  [field: string]: unknown;
}

export interface PurgeDecision {
  node: string;
  sandbox: string;
  /** The sandbox's subjects: `corral.v1.evt.<node>.<sandbox>.>`. */
  subject: string;
  /** Purge the records on `subject` with a sequence up to and including this one. */
  upToSeq: number;
  /** When the sandbox ended (the `deleted`/`rolledBack` record's `at`). */
  endedAt: number;
  /** How many of the given records the purge removes. */
  records: number;
}

export const DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000;

/** The sandbox's own task ended for good: deleted, or a failed create rolled back with no leftovers. */
function ends(r: LogRecord): boolean {
  if (r.taskId !== undefined && r.taskId !== r.sandbox) return false; // a pod container's facts
  if (r.kind === 'deleted') return true;
  return r.kind === 'rolledBack' && (!Array.isArray(r.leftovers) || r.leftovers.length === 0);
}

/**
 * Something new under the sandbox's id: a create input, or any lifecycle fact of its own task (which a
 * finished sandbox no longer produces). `state` records and late inputs after the end are the old
 * sandbox's stragglers.
 */
function begins(r: LogRecord): boolean {
  if (r.kind === 'input') return (r.event as { type?: unknown } | undefined)?.type === 'create';
  if (r.taskId !== undefined && r.taskId !== r.sandbox) return false;
  return ['created', 'started', 'exited', 'deleted', 'rolledBack'].includes(r.kind);
}

/**
 * Which sandboxes' records to purge at `now`: for each (node, sandbox), the records up to the end of
 * the latest incarnation that ended at least `retentionMs` ago, stopping before anything that began
 * after it. `records` must hold, for each sandbox, every record from its end on (the whole log, or
 * the sandbox's whole subject): a create input missing from them cannot protect a newer sandbox.
 * Given only `deleted`/`rolledBack` facts, the result says which sandboxes to look at, and each
 * purge ends at the fact itself.
 */
export function sandboxesToPurge(records: readonly LogRecord[], now: number, retentionMs: number): PurgeDecision[] {
  const groups = new Map<string, LogRecord[]>();
  for (const r of records) {
    if (typeof r.seq !== 'number' || typeof r.node !== 'string' || typeof r.sandbox !== 'string') continue;
    const k = `${r.node}\u0000${r.sandbox}`;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push(r);
  }
  const out: PurgeDecision[] = [];
  for (const g of groups.values()) {
    g.sort((a, b) => a.seq - b.seq);
    let end = -1;
    for (let i = g.length - 1; i >= 0; i--) {
      const r = g[i]!;
      if (ends(r) && typeof r.at === 'number' && r.at + retentionMs <= now) {
        end = i;
        break;
      }
    }
    if (end < 0) continue;
    let last = end;
    while (last + 1 < g.length && !begins(g[last + 1]!)) last++;
    const { node, sandbox } = g[end]!;
    out.push({
      node,
      sandbox,
      subject: subjects.evt(node, sandbox, '>'),
      upToSeq: g[last]!.seq,
      endedAt: g[end]!.at,
      records: last + 1,
    });
  }
  return out.sort((a, b) => a.endedAt - b.endedAt || a.upToSeq - b.upToSeq);
}

/** Purge each decision's subject up to its sequence; resolves with how many records were removed. */
export async function applyPurges(nc: NatsConnection, decisions: readonly PurgeDecision[]): Promise<number> {
  const jsm = await jetstreamManager(nc);
  let purged = 0;
  for (const d of decisions) {
    try {
      const r = await jsm.streams.purge(EVENTS_STREAM, { filter: d.subject, seq: d.upToSeq + 1 });
      purged += r.purged;
    } catch (e) {
      throw err.unavailable(`cannot purge ${d.subject} from ${EVENTS_STREAM}: ${(e as Error).message}`, e);
    }
  }
  return purged;
}

/** Every record on `filter`, in stream order, up to the stream's last sequence at call time. */
export async function readSubject(nc: NatsConnection, filter: string, sinceSeq?: number): Promise<LogRecord[]> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(EVENTS_STREAM, { subjects_filter: filter });
  const counts = info.state.subjects ?? {};
  if (Object.values(counts).every((n) => !n)) return [];
  const last = info.state.last_seq;
  const js = jetstream(nc);
  const start = sinceSeq ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: sinceSeq } : {};
  const c = await js.consumers.get(EVENTS_STREAM, { filter_subjects: filter, ...start });
  const out: LogRecord[] = [];
  try {
    for (;;) {
      const m = await c.next({ expires: 2000 });
      if (!m) break;
      try {
        out.push({
          ...(decode(m.data) as Record<string, unknown>),
          seq: m.seq,
          subject: m.subject,
        } as unknown as LogRecord);
      } catch {
        /* not ours: skip */
      }
      if (m.seq >= last || m.info.pending === 0) break;
    }
  } finally {
    await c.delete().catch(() => {
      // An ordered consumer: the server removes it by itself after 5 min without use.
    });
  }
  return out;
}

export interface RetentionReport {
  /** Sandboxes whose records were purged, oldest end first. */
  purged: PurgeDecision[];
  /** Records removed in all. */
  records: number;
}

/**
 * One janitor pass: find sandboxes that ended at least `retentionMs` before `now` (their `deleted` and
 * `rolledBack` facts), read each one's whole history, decide, purge. Idempotent; safe to run while the
 * agent appends. The agent runs it periodically (e.g. hourly) with `Settings.eventRetentionMs`.
 */
export async function runRetention(
  nc: NatsConnection,
  opts: { retentionMs: number; now?: number; node?: string },
): Promise<RetentionReport> {
  const now = opts.now ?? Date.now();
  const node = opts.node ?? '*';
  const ended = [
    ...(await readSubject(nc, node === '*' ? `${PREFIX}.evt.*.*.deleted` : subjects.evt(node, '*', 'deleted'))),
    ...(await readSubject(nc, node === '*' ? `${PREFIX}.evt.*.*.rolledBack` : subjects.evt(node, '*', 'rolledBack'))),
  ];
  const candidates = sandboxesToPurge(ended, now, opts.retentionMs);
  const history: LogRecord[] = [];
  for (const c of candidates) history.push(...(await readSubject(nc, c.subject)));
  const decisions = sandboxesToPurge(history, now, opts.retentionMs);
  const records = await applyPurges(nc, decisions);
  return { purged: decisions, records };
}

/** A retention period: `7d`, `36h`, `90m`, `3600s`, `500ms`, or a bare number of days. */
export function parseRetention(v: string, what = 'retention period'): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(v.trim());
  if (!m) throw err.invalid(`${what} is not a duration: ${JSON.stringify(v)} (use 7d, 36h, 90m)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 'd') as 'd'];
  return Math.round(Number(m[1]) * unit);
}
