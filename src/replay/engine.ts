/**
 * Rebuild a sandbox's actors from its recorded log: the same machine definitions, with every effect
 * replaced by its recorded outcome (EffectGate). Inputs are fed in stream order; after each, the
 * rebuilt state is compared with the recorded `state` record (a determinism check, as Temporal's
 * replay does). The CLI uses it offline; the agent uses it to recover after a crash, then opens the
 * gate so that whatever was in flight runs for real.
 */
import { createActor } from 'xstate';
import type { CreateTaskRequest } from '../domain/task.ts';
import type { StartingPoint } from '../domain/snapshot.ts';
import {
  containerMachine,
  provideEffects,
  sandboxMachine,
  type Effects,
  type LifecycleActor,
  type LifecycleMachine,
} from '../machines/index.ts';
import { EffectGate, tick, type Outcome } from './gate.ts';
import type { EventRecord } from './records.ts';

export interface ReplayTask {
  taskId: string;
  sandboxId: string;
  machine: 'sandbox' | 'container';
  instance: string;
  request: CreateTaskRequest;
  rid: string;
  actor: LifecycleActor;
  /** Every distinct state value the actor went through, in order (JSON). */
  visited: string[];
  /** Rebuilt from a snapshot (its first, restored state is not a new state). */
  fromSnapshot: boolean;
  /** How many facts and state records the log holds for this task (recovery appends only what is new). */
  recorded: { facts: number; states: number };
}

export type Lane = 'sandbox' | 'container' | 'coordinator' | 'agent' | 'worker:mount' | 'worker:hypervisor';

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
}

export interface Divergence {
  seq: number;
  taskId: string;
  message: string;
  expected?: unknown;
  actual?: unknown;
}

export interface ReplayResult {
  tasks: ReplayTask[];
  timeline: TimelineEntry[];
  divergence?: Divergence;
  /** Inputs fed (requests + effect outcomes). */
  inputs: number;
  lastSeq: number;
}

export interface ReplayOptions {
  /** Tasks to start from a snapshot instead of their create; their records up to `seq` are skipped. */
  from?: StartingPoint[];
  /** Stop after this stream sequence. */
  until?: number;
  machines?: { sandbox: LifecycleMachine; container: LifecycleMachine };
  gate?: EffectGate;
  /** Effects of one task. Default: every effect waits on the gate (offline replay). */
  effects?: (
    t: Pick<ReplayTask, 'taskId' | 'sandboxId' | 'instance' | 'machine'> & { effectsFrom: number },
    gate: EffectGate,
  ) => Effects;
  /** An inspection observer for a task's actor (recovery logs and records transitions with it). */
  inspect?: (t: Pick<ReplayTask, 'taskId' | 'sandboxId' | 'instance' | 'machine'>) => (ev: never) => void;
  /** Called once per task, before its actor starts (recovery wires replies and facts here). */
  onTask?: (t: ReplayTask) => void;
  /** Called after each entry; `--step` waits for a key here. */
  onEntry?: (e: TimelineEntry, result: ReplayResult) => void | Promise<void>;
  /** Stop at the first divergence. @default true */
  stopOnDivergence?: boolean;
}

const MOUNT_EFFECTS = new Set(['mountRootfs', 'mkdir', 'bind', 'undo:unmountAll', 'undo:removeTree']);
const HV_EFFECTS = new Set(['createUser', 'boot', 'startProcess', 'signal', 'undo:stopVm', 'undo:removeUser']);
export function laneOf(r: EventRecord, machine: 'sandbox' | 'container'): Lane {
  const effect = r.effect as string | undefined;
  if (effect) {
    if (MOUNT_EFFECTS.has(effect)) return 'worker:mount';
    if (HV_EFFECTS.has(effect)) return 'worker:hypervisor';
    if (effect.startsWith('undo:') || effect === 'timer') return 'coordinator';
    return 'agent';
  }
  return machine;
}

/** Offline effects: each one waits for its recorded outcome; past the end of the log, forever. */
export function gatedEffects(taskId: string, gate: EffectGate): Effects {
  const wait = async (name: string): Promise<never> => {
    const o = await gate.wait(taskId, name);
    if (o === 'live') return new Promise<never>(() => {});
    if (o.ok) return o.output as never;
    throw o.error;
  };
  return {
    validate: () => wait('validate'),
    configure: () => wait('configure'),
    runStep: ({ step }) => wait(step.kind),
    startProcess: () => wait('startProcess'),
    signal: () => wait('signal'),
    compensate: (c) => wait(`undo:${c.kind}`),
    sleep: () => wait('timer'),
  };
}

const json = (v: unknown) => JSON.stringify(v);
const settle = async () => {
  await tick();
  await tick();
};

export async function replay(records: EventRecord[], o: ReplayOptions = {}): Promise<ReplayResult> {
  const machines = o.machines ?? { sandbox: sandboxMachine, container: containerMachine };
  const gate = o.gate ?? new EffectGate();
  const tasks = new Map<string, ReplayTask>();
  const lastStateAt = new Map<string, number>();
  /** Per task: the states rebuilt (one per event the actor took) since the last state record matched. */
  const unchecked = new Map<string, string[]>();
  const result: ReplayResult = { tasks: [], timeline: [], inputs: 0, lastSeq: 0 };
  const sorted = [...records].sort((a, b) => a.seq - b.seq);
  const from = new Map((o.from ?? []).map((f) => [f.taskId, f]));
  const covered = (r: EventRecord) => r.taskId !== undefined && (from.get(r.taskId)?.seq ?? 0) >= r.seq;
  const counts = new Map<string, { facts: number; states: number }>();
  for (const r of sorted) {
    if (!r.taskId || r.kind === 'input' || covered(r)) continue;
    const c = counts.get(r.taskId) ?? { facts: 0, states: 0 };
    if (r.kind === 'state') c.states++;
    else c.facts++;
    counts.set(r.taskId, c);
  }

  const diverge = (d: Divergence) => {
    result.divergence ??= d;
  };
  const start = (
    base: Pick<ReplayTask, 'taskId' | 'sandboxId' | 'instance' | 'machine'>,
    effectsFrom: number,
    actorOpts: { input?: unknown; snapshot?: unknown },
    request: CreateTaskRequest,
    rid: string,
  ) => {
    const inspect = o.inspect?.(base);
    const fx = o.effects ? o.effects({ ...base, effectsFrom }, gate) : gatedEffects(base.taskId, gate);
    const actor = createActor(provideEffects(machines[base.machine], fx), {
      ...actorOpts,
      ...(inspect ? { inspect: inspect as never } : {}),
    } as never) as LifecycleActor;
    const t: ReplayTask = {
      ...base,
      request,
      rid,
      actor,
      visited: [],
      fromSnapshot: actorOpts.snapshot !== undefined,
      recorded: counts.get(base.taskId) ?? { facts: 0, states: 0 },
    };
    unchecked.set(base.taskId, []);
    actor.subscribe({
      next: (s) => {
        const v = json(s.value);
        if (t.visited[t.visited.length - 1] !== v) t.visited.push(v);
        unchecked.get(base.taskId)?.push(v);
      },
      error: () => {},
    });
    tasks.set(base.taskId, t);
    o.onTask?.(t);
    actor.start();
    return t;
  };
  for (const f of from.values()) {
    const ctx = (f.snapshot as { context?: { request?: CreateTaskRequest; createRid?: string } }).context;
    start(
      { taskId: f.taskId, sandboxId: f.sandboxId, instance: f.instance, machine: f.machine },
      f.effects,
      { snapshot: f.snapshot },
      ctx?.request as CreateTaskRequest,
      ctx?.createRid ?? '',
    );
  }
  if (from.size) await settle();
  for (const r of sorted) {
    if (covered(r)) continue;
    if (o.until !== undefined && r.seq > o.until) break;
    if (result.divergence && (o.stopOnDivergence ?? true)) break;
    result.lastSeq = r.seq;
    const taskId = r.taskId ?? '';
    const event = r.event as ({ type: string } & Record<string, unknown>) | undefined;
    let entry: TimelineEntry;

    if (r.kind === 'input' && event?.type === 'create') {
      const machine =
        (event.machine as 'sandbox' | 'container' | undefined) ??
        (event.containerType === 'pod_container' ? 'container' : 'sandbox');
      const base = { taskId, sandboxId: r.sandbox, machine, instance: String(event.instance ?? taskId) };
      const request = event.request as CreateTaskRequest;
      start(
        base,
        0,
        { input: { id: taskId, request, rid: String(event.rid ?? '') } },
        request,
        String(event.rid ?? ''),
      );
      await settle();
      result.inputs++;
      entry = {
        seq: r.seq,
        at: r.at,
        taskId,
        lane: machine,
        kind: 'create',
        label: `create (${String(event.containerType)})`,
        payload: request,
      };
    } else {
      const t = tasks.get(taskId);
      if (!t) continue; // records of tasks created before the window: nothing to rebuild them from
      if (r.kind === 'input' && typeof r.effect === 'string') {
        const outcome: Outcome = r.ok
          ? { ok: true, output: r.output }
          : { ok: false, error: r.error as Outcome extends { error: infer E } ? E : never };
        if (!(await gate.deliver(taskId, r.effect, outcome))) {
          diverge({
            seq: r.seq,
            taskId,
            message: `the log has an outcome of ${r.effect}, but the rebuilt ${t.machine} (${json(t.actor.getSnapshot().value)}) never asked for it`,
          });
        }
        await settle();
        result.inputs++;
        const since = lastStateAt.get(taskId);
        lastStateAt.set(taskId, r.at); // a task runs one effect at a time: the next one starts here at the latest
        entry = {
          seq: r.seq,
          at: r.at,
          taskId,
          lane: laneOf(r, t.machine),
          kind: 'effect',
          label: `${r.effect} ${r.ok ? 'ok' : `failed: ${(r.error as { code?: string })?.code}`}`,
          payload: r.ok ? r.output : r.error,
          ok: Boolean(r.ok),
          durationMs: since === undefined ? undefined : r.at - since,
        };
      } else if (r.kind === 'input' && event) {
        t.actor.send(event as never);
        await settle();
        result.inputs++;
        entry = { seq: r.seq, at: r.at, taskId, lane: t.machine, kind: 'request', label: event.type, payload: event };
      } else if (r.kind === 'state') {
        lastStateAt.set(taskId, r.at);
        const actual = t.actor.getSnapshot().value;
        // A state record joins the sandbox's append chain after the input that led there, so another
        // input may sit between them in the log: match it against every state rebuilt since the last match.
        const q = unchecked.get(taskId)!,
          k = q.indexOf(json(r.value));
        if (k >= 0) q.splice(0, k + 1);
        const ok = k >= 0 || json(actual) === json(r.value);
        if (!ok)
          diverge({
            seq: r.seq,
            taskId,
            message: `state differs after seq ${r.seq}: recorded ${json(r.value)}, rebuilt ${json(actual)}`,
            expected: r.value,
            actual,
          });
        entry = {
          seq: r.seq,
          at: r.at,
          taskId,
          lane: t.machine,
          kind: 'state',
          label: json(r.value),
          payload: { value: r.value, event: r.event },
          ok,
        };
      } else {
        entry = { seq: r.seq, at: r.at, taskId, lane: t.machine, kind: 'fact', label: r.kind, payload: r };
      }
      entry.state = json(t.actor.getSnapshot().value);
    }
    if (entry.kind === 'create') entry.state = json(tasks.get(taskId)!.actor.getSnapshot().value);
    result.timeline.push(entry);
    await o.onEntry?.(entry, result);
  }
  unchecked.clear(); // actors that go on live (recovery) record nothing more here
  result.tasks = [...tasks.values()];
  return result;
}
