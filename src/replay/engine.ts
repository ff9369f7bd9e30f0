/**
 * The person-facing replay (`corral replay`, its `--step` mode and the HTML viewer): the rebuild of
 * a sandbox's actors (rebuild.ts) turned into a timeline, one entry per record: which actor it
 * belongs to (its lane), what it was, the state it led to, how long an effect took, and whether a
 * recorded state matched the rebuilt one.
 */
import type { EventRecord } from '../bus/eventlog-reader.ts';
import { rebuild, type Divergence, type RebuildOptions, type ReplayTask } from './rebuild.ts';

export { type Divergence, type ReplayTask, type StartingPoint } from './rebuild.ts';

export type Lane =
  'sandbox' | 'container' | 'coordinator' | 'agent' | 'worker:mount' | 'worker:hypervisor' | 'worker:network';

export interface TimelineEntry {
  seq: number;
  at: number;
  taskId: string;
  lane: Lane;
  kind: 'create' | 'request' | 'effect' | 'state' | 'fact';
  label: string;
  payload: unknown;
  /** The rebuilt machine's state after this entry (JSON). */
  state?: string;
  /** Effects: the outcome. States: whether the recorded state matches the rebuilt one. */
  ok?: boolean;
  /** For effects: time from the state that asked for it to its recorded outcome. */
  durationMs?: number;
  /** The trace the record was appended in (tracing was on), e.g. the request's that led to an input. */
  traceId?: string;
  /** The replay diverged here (rebuild.ts RecordCheck). */
  diverged?: true;
}

export interface ReplayResult {
  tasks: ReplayTask[];
  timeline: TimelineEntry[];
  divergence?: Divergence;
  /** Inputs fed (requests + effect outcomes). */
  inputs: number;
  lastSeq: number;
}

export interface ReplayOptions extends Omit<RebuildOptions, 'onRecord'> {
  /** Called after each entry; `--step` waits for a key here. */
  onEntry?: (e: TimelineEntry, result: ReplayResult) => void | Promise<void>;
}

const MOUNT_EFFECTS = new Set(['mountRootfs', 'mkdir', 'bind', 'undo:unmountAll', 'undo:removeTree']);
const HV_EFFECTS = new Set(['createUser', 'boot', 'startProcess', 'signal', 'undo:stopVm', 'undo:removeUser']);
const NET_EFFECTS = new Set(['createNetns', 'setupNetwork', 'undo:teardownNetwork', 'undo:removeNetns']);
export function laneOf(r: EventRecord, machine: 'sandbox' | 'container'): Lane {
  const effect = r.effect as string | undefined;
  if (effect) {
    if (MOUNT_EFFECTS.has(effect)) return 'worker:mount';
    if (NET_EFFECTS.has(effect)) return 'worker:network';
    if (HV_EFFECTS.has(effect) || effect.startsWith('act:')) return 'worker:hypervisor'; // every act is a hypervisor op
    if (effect.startsWith('undo:') || effect === 'timer') return 'coordinator';
    return 'agent';
  }
  return machine;
}

const json = (v: unknown) => JSON.stringify(v);

function entryFor(
  r: EventRecord,
  t: ReplayTask,
  lane: Lane,
  kind: TimelineEntry['kind'],
  label: string,
  payload: unknown,
): TimelineEntry {
  const e: TimelineEntry = { seq: r.seq, at: r.at, taskId: t.taskId, lane } as TimelineEntry;
  if (typeof r.traceId === 'string') e.traceId = r.traceId;
  e.kind = kind;
  e.label = label;
  e.payload = payload;
  return e;
}

export async function replay(records: EventRecord[], o: ReplayOptions = {}): Promise<ReplayResult> {
  const result: ReplayResult = { tasks: [], timeline: [], inputs: 0, lastSeq: 0 };
  /** Per task: when its last state or effect outcome was recorded (an effect starts there at the latest). */
  const lastAt = new Map<string, number>();
  // Entries are built field by field in one order (no spreads: this runs once per record, issue 13).
  const entryOf = (r: EventRecord, t: ReplayTask, matched: boolean | undefined): TimelineEntry => {
    const event = r.event as ({ type: string } & Record<string, unknown>) | undefined;
    if (r.kind === 'input' && event?.type === 'create')
      return entryFor(r, t, t.machine, 'create', `create (${String(event.containerType)})`, t.request);
    if (r.kind === 'input' && typeof r.effect === 'string') {
      const since = lastAt.get(t.taskId);
      lastAt.set(t.taskId, r.at); // a task runs one effect at a time: the next one starts here at the latest
      const code = (r.error as { code?: string } | undefined)?.code;
      const label = `${r.effect} ${r.ok ? 'ok' : `failed: ${code}`}`;
      const e = entryFor(r, t, laneOf(r, t.machine), 'effect', label, r.ok ? r.output : r.error);
      e.ok = Boolean(r.ok);
      e.durationMs = since === undefined ? undefined : r.at - since;
      return e;
    }
    if (r.kind === 'input' && event) return entryFor(r, t, t.machine, 'request', event.type, event);
    if (r.kind === 'state') {
      lastAt.set(t.taskId, r.at);
      const e = entryFor(r, t, t.machine, 'state', json(r.value), { value: r.value, event: r.event });
      e.ok = matched;
      return e;
    }
    return entryFor(r, t, t.machine, 'fact', r.kind, r);
  };
  const rebuilt = await rebuild(records, {
    ...o,
    // Not async: without onEntry (no `--step`), a record costs no promise (issue 13).
    onRecord: (r, t, check) => {
      if (!t) return;
      result.lastSeq = r.seq;
      const entry = entryOf(r, t, check.matched);
      // The rebuild keeps every distinct state it saw, as JSON: the last one is the actor's current state.
      entry.state = t.visited[t.visited.length - 1] ?? json(t.actor.getSnapshot().value);
      if (check.diverged) entry.diverged = true;
      result.timeline.push(entry);
      return o.onEntry?.(entry, result);
    },
  });
  return { ...rebuilt, timeline: result.timeline };
}
