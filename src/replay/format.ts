/**
 * Text forms of event records and replay timelines, one line each (`corral events`, `corral replay`).
 * Pure functions: no I/O, no clock.
 */
import type { Divergence, ReplayResult, TimelineEntry } from './engine.ts';
import type { EventRecord } from '../bus/eventlog-reader.ts';

/** A recorded state value as a person reads it: `"running"`, `{"running":"idle"}` → `running.idle`. */
export function stateText(v: unknown): string {
  if (typeof v === 'string') {
    if (!v.startsWith('"') && !v.startsWith('{')) return v;
    try {
      return stateText(JSON.parse(v));
    } catch {
      return v;
    }
  }
  if (v && typeof v === 'object')
    return Object.entries(v)
      .map(([k, sub]) => `${k}.${stateText(sub)}`)
      .join(',');
  return String(v);
}

/** At most `max` characters of JSON. */
export function brief(v: unknown, max = 60): string {
  const s = JSON.stringify(v) ?? '';
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** A field for a summary: a string as it is, a missing one as `dflt`, anything else brief JSON. */
const text = (v: unknown, dflt: string): string =>
  typeof v === 'string' ? v : v === undefined || v === null ? dflt : brief(v, 40);

const fields = (r: Record<string, unknown>, keys: string[]) =>
  keys
    .filter((k) => r[k] !== undefined)
    .map((k) => `${k}=${typeof r[k] === 'string' ? r[k] : brief(r[k], 40)}`)
    .join(' ');

/** What an effect returned, in a few words (the whole payload is in --json and the HTML page). */
export function outcomeText(effect: string, ok: boolean, v: unknown): string {
  if (!ok) {
    const e = (v ?? {}) as { code?: string; message?: string };
    return `failed: ${e.code ?? '?'}: ${e.message ?? ''}`;
  }
  const o = (v ?? {}) as Record<string, unknown>;
  if (effect === 'configure' && Array.isArray(o.steps))
    return `ok: plan ${(o.steps as { kind: string }[]).map((s) => s.kind).join(', ') || '(no steps)'}`;
  if (effect === 'validate') return `ok${o.type ? `: ${text(o.type, '')}` : ''}`;
  const f = fields(o, ['pid', 'user', 'uid', 'createdDir']);
  return f
    ? `ok: ${f}`
    : v === undefined || (typeof v === 'object' && v && !Object.keys(v).length)
      ? 'ok'
      : `ok: ${brief(v, 40)}`;
}

/** A request or worker event fed to a machine: its type and main fields. */
export const requestText = (ev: Record<string, unknown>) =>
  `${String(ev.type)} ${fields(ev, ['signal', 'all', 'exitStatus', 'exitedAt'])}`.trimEnd();

/** The summary column of `corral events`: the effect and its outcome, the request, the state, the fact's fields. */
export function recordSummary(r: EventRecord): string {
  const ev = r.event as Record<string, unknown> | string | undefined;
  if (r.kind === 'input' && typeof r.effect === 'string')
    return `${r.effect} ${outcomeText(r.effect, Boolean(r.ok), r.ok ? r.output : r.error)}`;
  if (r.kind === 'input' && ev && typeof ev === 'object') {
    if (ev.type === 'create') {
      const bundle = text((ev.request as { bundle?: unknown } | undefined)?.bundle, '?');
      return `create ${text(ev.containerType, '')} (${text(ev.machine, 'sandbox')} machine, bundle ${bundle})`;
    }
    return requestText(ev);
  }
  if (r.kind === 'state') return `${stateText(r.value)} ← ${text(ev, '?')}`;
  if (r.kind === 'rolledBack') {
    const e = (r.error ?? {}) as { code?: string; message?: string };
    const undone = ((r.undone as string[]) ?? []).join(',');
    return `error=${e.code}: ${e.message} undone=[${undone}] leftovers=${((r.leftovers as unknown[]) ?? []).length}`;
  }
  const known = fields(r, ['step', 'pid', 'exitStatus', 'exitedAt', 'containerType', 'sandboxId', 'bundle']);
  if (known) return known;
  const { seq: _s, subject: _u, node: _n, sandbox: _b, kind: _k, at: _a, taskId: _t, traceId: _r, ...rest } = r;
  return Object.keys(rest).length ? brief(rest, 100) : '';
}

const pad = (s: string, n: number) => s.padEnd(n);
const time = (at: number) => new Date(at).toISOString().replace('T', ' ').slice(0, 23);

/** ` trace=<id>` for a record appended in a trace (tracing was on), else nothing. */
const traceText = (traceId: unknown) => (typeof traceId === 'string' ? `  trace=${traceId}` : '');

/** One line of `corral events`: seq, time (UTC), node, sandbox, task, kind, summary, and the trace id if any. */
export function recordLine(r: EventRecord): string {
  return (
    [
      String(r.seq).padStart(6),
      time(r.at),
      pad(r.node, 10),
      pad(r.sandbox, 12),
      pad(r.taskId ?? '-', 12),
      pad(r.kind, 10),
      recordSummary(r),
    ].join('  ') + traceText(r.traceId)
  );
}

export const ms = (d: number) => (d >= 1000 ? `${(d / 1000).toFixed(2)} s` : `${d} ms`);

/**
 * One line of the replay timeline: time since the first entry, seq, task, lane, what happened, the state
 * it led to, and for an input (a create, a request, an effect's outcome) the trace it was recorded in.
 */
export function entryLine(e: TimelineEntry, t0: number): string {
  let what: string;
  switch (e.kind) {
    case 'create':
      what = `${e.label}`;
      break;
    case 'request':
      what = `request ${requestText(e.payload as Record<string, unknown>)}`;
      break;
    case 'effect': {
      const name = e.label.split(' ')[0]!;
      const took = e.durationMs === undefined ? '' : ` (${ms(e.durationMs)})`;
      what = `effect ${name} ${outcomeText(name, e.ok ?? false, e.payload)}${took}`;
      break;
    }
    case 'state': {
      what =
        e.ok === false
          ? `state ${stateText(e.label)} ✗ rebuilt ${stateText(e.state)}`
          : `state ${stateText(e.label)} ✓`;
      break;
    }
    case 'fact':
      what = `fact ${e.label} ${recordSummary(e.payload as EventRecord)}`.trimEnd();
      break;
  }
  const input = e.kind !== 'state' && e.kind !== 'fact';
  const to = input ? `  → ${stateText(e.state)}${traceText(e.traceId)}` : '';
  const time = `+${((e.at - t0) / 1000).toFixed(3)}s`.padStart(9);
  return `${time} ${String(e.seq).padStart(6)}  ${pad(e.taskId, 12)} ${pad(e.lane, 18)} ${what}${to}`;
}

export const TIMELINE_HEADER =
  `${'time'.padStart(9)} ${'seq'.padStart(6)}  ${pad('task', 12)} ${pad('lane', 18)} ` + 'entry  → rebuilt state';

/** The one line naming the first divergent step. */
export function divergenceLine(d: Divergence): string {
  const what =
    d.expected !== undefined || d.actual !== undefined
      ? `recorded state ${stateText(d.expected)}, rebuilt ${stateText(d.actual)}`
      : d.message;
  return `replay diverged at seq ${d.seq} (task ${d.taskId}): ${what}`;
}

/** Closing lines: each task's final rebuilt state, and whether replay matched the log. */
export function summaryLines(r: ReplayResult): string[] {
  const checks = r.timeline.filter((e) => e.kind === 'state').length;
  return [
    ...r.tasks.map(
      (t) =>
        `task ${t.taskId} (${t.machine}): ${stateText(t.actor.getSnapshot().value)}, ` +
        `visited ${t.visited.map(stateText).join(' → ')}`,
    ),
    r.divergence
      ? divergenceLine(r.divergence)
      : `ok: ${r.inputs} inputs replayed up to seq ${r.lastSeq}; ${checks} rebuilt states equal the recorded ones`,
  ];
}
