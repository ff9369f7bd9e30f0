/**
 * Rebuild a sandbox's actors from its recorded log: the same machine definitions, with every effect
 * replaced by its recorded outcome (EffectGate). Inputs are fed in stream order; after each, the
 * rebuilt state is compared with the recorded `state` record (a determinism check, as Temporal's
 * replay does). Recovery uses this directly (then opens the gate so whatever was in flight runs for
 * real); the person-facing timeline (`engine.ts`, `corral replay`) is built on top of it.
 *
 * No tick counting: a request is consumed synchronously by `actor.send`, an effect asks the gate
 * synchronously when its state invokes it, and an outcome handed to an effect counts as consumed once
 * the task shows it (its actor's snapshot changes, or the next effect asks the gate).
 */
import { createActor, type InspectionEvent, type Observer, type Snapshot } from 'xstate';
import { ensureError, type WireError } from '../errors.ts';
import { isFactKind, type CreateTaskRequest } from '../domain/task.ts';
import {
  containerMachine,
  bindEffects,
  sandboxMachine,
  sharedMachine,
  upgradeSnapshot,
  type Effects,
  type LifecycleActor,
  type LifecycleContext,
  type LifecycleEvent,
  type LifecycleInput,
  type LifecycleMachine,
} from '../machines/index.ts';
import { EffectGate, type Outcome } from './gate.ts';
import { bindGate, gatedMachine } from './gated-logic.ts';
import type { EventRecord } from '../bus/eventlog-reader.ts';
import type { StartingPoint } from '../domain/snapshot.ts';

export type { StartingPoint } from '../domain/snapshot.ts';

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

export interface Divergence {
  seq: number;
  taskId: string;
  message: string;
  expected?: unknown;
  actual?: unknown;
}

export type TaskBase = Pick<ReplayTask, 'taskId' | 'sandboxId' | 'instance' | 'machine'>;

export interface RebuildOptions {
  /** Tasks to start from a snapshot instead of their create; their records up to `seq` are skipped. */
  from?: StartingPoint[];
  /** Stop after this stream sequence. */
  until?: number;
  machines?: { sandbox: LifecycleMachine; container: LifecycleMachine };
  gate?: EffectGate;
  /** Effects of one task. Default: every effect waits on the gate (offline replay). */
  effects?: (t: TaskBase & { effectsFrom: number }, gate: EffectGate) => Effects;
  /** An inspection observer for a task's actor (recovery logs and records transitions with it). */
  inspect?: (t: TaskBase) => Observer<InspectionEvent> | ((ev: InspectionEvent) => void);
  /** Called once per task, before its actor starts (recovery wires replies and facts here). */
  onTask?: (t: ReplayTask) => void;
  /** Called after each record was applied (`t`: its task, when it has one rebuilt). */
  onRecord?: (r: EventRecord, t: ReplayTask | undefined, check: RecordCheck) => void | Promise<void>;
  /** Stop at the first divergence. @default true */
  stopOnDivergence?: boolean;
}

/** What applying a record showed: whether the rebuilt state matched a `state` record. */
export interface RecordCheck {
  /** `state` records: the rebuilt state matched (the determinism check). */
  matched?: boolean;
  /**
   * The replay diverged at this record (the first divergence). Its sequence alone does not say which record
   * it is: records that shared a message (src/bus/eventlog.ts Share) share its sequence.
   */
  diverged?: true;
}

export interface RebuildResult {
  tasks: ReplayTask[];
  divergence?: Divergence;
  /** Inputs fed (requests + effect outcomes). */
  inputs: number;
  lastSeq: number;
}

/** A create input as the agent journals it (agent/task-api.ts); the fields read with a fallback may be absent. */
type CreateInput = {
  type: 'create';
  rid?: string;
  request: CreateTaskRequest;
  containerType?: string;
  machine?: 'sandbox' | 'container';
  instance?: string;
};

/** An outcome not shown by its task within this long is a divergence (a bug), not a hang. */
const CONSUME_TIMEOUT_MS = 10_000;

const json = (v: unknown) => JSON.stringify(v);

/**
 * Per task: whether it showed a change (a new snapshot, or its next effect asking the gate) since `seen`
 * was cleared, and the `consumed` waiting for one. One subscription per task, not one per outcome (issue 13).
 */
type Changes = { seen: boolean; wake?: () => void };

/**
 * Resolves once the task shows it consumed what it was just handed: a new snapshot, or its next effect
 * asking (both within microtasks of the hand-over); false if neither came within the deadline.
 */
function consumed(t: ReplayTask, c: Changes): Promise<boolean> {
  // A crashed actor leaves its invoked effects waiting (their signals never abort): nothing takes it.
  if (t.actor.getSnapshot().status !== 'active') return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      c.wake = undefined;
      resolve(false);
    }, CONSUME_TIMEOUT_MS);
    c.wake = () => {
      c.wake = undefined;
      clearTimeout(timer);
      resolve(true);
    };
  });
}

export async function rebuild(records: EventRecord[], o: RebuildOptions = {}): Promise<RebuildResult> {
  const machines = o.machines ?? { sandbox: sandboxMachine, container: containerMachine };
  const gate = o.gate ?? new EffectGate();
  const tasks = new Map<string, ReplayTask>();
  /** Per task: the states rebuilt (one per event the actor took) since the last state record matched. */
  const unchecked = new Map<string, string[]>();
  const result: RebuildResult = { tasks: [], inputs: 0, lastSeq: 0 };
  const sorted = [...records].sort((a, b) => a.seq - b.seq);
  const from = new Map((o.from ?? []).map((f) => [f.taskId, f]));
  const covered = (r: EventRecord) => r.taskId !== undefined && (from.get(r.taskId)?.seq ?? 0) >= r.seq;
  const counts = new Map<string, { facts: number; states: number }>();
  for (const r of sorted) {
    if (!r.taskId || r.kind === 'input' || covered(r)) continue;
    const c = counts.get(r.taskId) ?? { facts: 0, states: 0 };
    if (r.kind === 'state') c.states++;
    else if (isFactKind(r.kind)) c.facts++; // not another writer's record of this task (`lost`)
    counts.set(r.taskId, c);
  }
  const diverge = (d: Divergence) => {
    result.divergence ??= d;
  };
  /** Actors that threw (an action, a guard, an effect's output of the wrong shape): a bug, or a log that lies. */
  const crashed = new Map<string, unknown>();
  const changes = new Map<string, Changes>();
  /** Undone once the log is applied: actors that go on live (recovery) are not watched here any more. */
  const detach: (() => void)[] = [];

  // Offline, effects take their recorded outcomes synchronously (gated-logic.ts); with `effects` (recovery)
  // they are promises that go live at the end of the log, and a hand-over is seen a few microtasks later.
  const live = o.effects;
  const start = (base: TaskBase, effectsFrom: number, init: { input: LifecycleInput } | { snapshot: unknown }) => {
    const inspect = o.inspect?.(base);
    const machine = live ? sharedMachine(machines[base.machine]) : gatedMachine(machines[base.machine]);
    // A restored actor still takes an input; its context comes from the snapshot, and a persisted
    // context always holds the request (the machine sets it from its input).
    const saved = 'snapshot' in init ? (init.snapshot as { context?: Partial<LifecycleContext> }).context : undefined;
    const input: LifecycleInput =
      'input' in init
        ? init.input
        : { id: base.taskId, request: saved?.request as CreateTaskRequest, rid: saved?.createRid ?? '' };
    const actor: LifecycleActor = createActor(machine, {
      input,
      ...('snapshot' in init ? { snapshot: upgradeSnapshot(init.snapshot) as Snapshot<unknown> } : {}),
      ...(inspect ? { inspect } : {}),
    });
    if (live) bindEffects(actor, live({ ...base, effectsFrom }, gate));
    else bindGate(actor, base.taskId, gate);
    const t: ReplayTask = {
      ...base,
      request: input.request,
      rid: input.rid,
      actor,
      visited: [],
      fromSnapshot: 'snapshot' in init,
      recorded: counts.get(base.taskId) ?? { facts: 0, states: 0 },
    };
    unchecked.set(base.taskId, []);
    const c: Changes = { seen: false };
    changes.set(base.taskId, c);
    const bump = () => {
      c.seen = true;
      c.wake?.();
    };
    const sub = actor.subscribe({
      next: (s) => {
        bump();
        const v = json(s.value);
        if (t.visited[t.visited.length - 1] !== v) t.visited.push(v);
        unchecked.get(base.taskId)?.push(v);
      },
      error: (e) => {
        bump();
        crashed.set(base.taskId, e); // reported as a divergence at the record that led there
      },
      complete: bump,
    });
    const off = gate.onAsk(base.taskId, bump);
    detach.push(() => (sub.unsubscribe(), off()));
    tasks.set(base.taskId, t);
    o.onTask?.(t);
    actor.start();
    return t;
  };

  for (const f of from.values())
    start({ taskId: f.taskId, sandboxId: f.sandboxId, instance: f.instance, machine: f.machine }, f.effects, {
      snapshot: f.snapshot,
    });
  for (const r of sorted) {
    if (covered(r)) continue;
    if (o.until !== undefined && r.seq > o.until) break;
    if (result.divergence && (o.stopOnDivergence ?? true)) break;
    result.lastSeq = r.seq;
    const taskId = r.taskId ?? '';
    const event = r.event as ({ type: string } & Record<string, unknown>) | undefined;
    const check: RecordCheck = {};
    const clean = !result.divergence;

    if (r.kind === 'input' && event?.type === 'create') {
      const c = event as CreateInput;
      const machine = c.machine ?? (c.containerType === 'pod_container' ? 'container' : 'sandbox');
      const base = { taskId, sandboxId: r.sandbox, machine, instance: c.instance ?? taskId };
      start(base, 0, { input: { id: taskId, request: c.request, rid: c.rid ?? '' } });
      result.inputs++;
    } else {
      const t = tasks.get(taskId);
      if (!t) continue; // records of tasks created before the window: nothing to rebuild them from
      if (r.kind === 'input' && typeof r.effect === 'string') {
        const outcome: Outcome = r.ok ? { ok: true, output: r.output } : { ok: false, error: r.error as WireError };
        const c = changes.get(taskId)!;
        const active = t.actor.getSnapshot().status === 'active';
        c.seen = false;
        const delivery = gate.deliver(taskId, r.effect, outcome);
        if (delivery === 'taken') {
          if (!(live ? await consumed(t, c) : active && c.seen))
            diverge({
              seq: r.seq,
              taskId,
              message: `the rebuilt ${t.machine} did not take the outcome of ${r.effect}`,
            });
        } else if (delivery === false) {
          const state = json(t.actor.getSnapshot().value);
          const unasked = `the rebuilt ${t.machine} (${state}) never asked for it`;
          diverge({ seq: r.seq, taskId, message: `the log has an outcome of ${r.effect}, but ${unasked}` });
        }
        result.inputs++;
      } else if (r.kind === 'input' && event) {
        t.actor.send(event as LifecycleEvent); // a recorded request, as the agent journaled it
        result.inputs++;
      } else if (r.kind === 'state') {
        const actual = t.actor.getSnapshot().value;
        // A state record joins the sandbox's append chain after the input that led there, so another
        // input may sit between them in the log: match it against every state rebuilt since the last match.
        const q = unchecked.get(taskId)!;
        const k = q.indexOf(json(r.value));
        if (k >= 0) q.splice(0, k + 1);
        check.matched = k >= 0 || json(actual) === json(r.value);
        if (!check.matched)
          diverge({
            seq: r.seq,
            taskId,
            message: `state differs after seq ${r.seq}: recorded ${json(r.value)}, rebuilt ${json(actual)}`,
            expected: r.value,
            actual,
          });
      }
    }
    if (crashed.has(taskId)) {
      const why = ensureError(crashed.get(taskId)).message;
      const message = `the rebuilt ${tasks.get(taskId)?.machine} crashed at seq ${r.seq}: ${why}`;
      crashed.delete(taskId); // an actor errors once
      diverge({ seq: r.seq, taskId, message });
    }
    if (clean && result.divergence) check.diverged = true;
    const after = o.onRecord?.(r, tasks.get(taskId), check);
    if (after) await after; // awaited only when it is a promise: most records cost no microtask
  }
  unchecked.clear();
  for (const f of detach) f();
  result.tasks = [...tasks.values()];
  return result;
}
