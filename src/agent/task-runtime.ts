/**
 * What runs a task's actor: binding its effects, routing what it emits (replies to the requests
 * waiting for them, facts to the event log and the fleet registry), and feeding it inputs through the
 * journal. The Task API (task-api.ts) and recovery (recovery.ts) both create and wire actors here.
 */
import { randomUUID } from 'node:crypto';
import { createActor } from 'xstate';
import { err } from '../errors.ts';
import type { Envelope } from '../bus/rpc.ts';
import type { WorkerEvent } from '../domain/ops.ts';
import type { CreateTaskRequest, Fact, Reply } from '../domain/task.ts';
import {
  bindEffects,
  containerMachine,
  sandboxMachine,
  sharedMachine,
  type LifecycleEvent,
} from '../machines/index.ts';
import type { EffectGate } from '../replay/gate.ts';
import type { RuntimeDeps } from './deps.ts';
import { taskEffects } from './effects.ts';
import { TaskJournal } from './journal.ts';
import { newTask, TaskTable, type NewTask, type ReplyTo, type Task } from './task-table.ts';
import type { WorkerClient } from './worker-client.ts';
import { inSpan } from '../util/trace.ts';

interface PendingReply {
  reply: ReplyTo;
  verb: 'create' | 'command';
  t0: number;
  /** Called with the outcome before the reply goes out (a fleet create keeps or removes its bundle). */
  after?: (ok: boolean) => void;
}

export class TaskRuntime {
  readonly tasks: TaskTable;
  readonly journal: TaskJournal;
  readonly workers: WorkerClient;
  /** Requests the machines answer later, by the rid their event carries. */
  private readonly pending = new Map<string, PendingReply>();

  constructor(readonly d: RuntimeDeps) {
    // A task that leaves the table (deleted, or a create rolled back clean) gives its snapshot and its
    // capacity in the fleet registry back, once (idempotent: most tasks hold none). A create rolled back
    // with leftovers stays in the table, reserved, until they are cleaned.
    this.tasks = new TaskTable((t) => {
      this.journal.removeSnapshot(t);
      this.d.registration
        ?.release({ id: t.id })
        .catch((e: unknown) => this.d.log.warn({ err: e, taskId: t.id }, 'capacity not released'));
    });
    this.journal = new TaskJournal({
      events: d.events,
      snapshots: d.snapshots,
      log: d.log,
      isLive: (t) => this.tasks.isLive(t),
    });
    this.workers = d.workers;
  }

  /** Registers a request the machine will answer (its event carries `rid`). */
  expect(rid: string, p: PendingReply): void {
    this.pending.set(rid, p);
  }
  expects(rid: string): boolean {
    return this.pending.has(rid);
  }
  forget(rid: string): void {
    this.pending.delete(rid);
  }

  /** Effects of one task (`gate`: while recovery replays its log; `effectsFrom`: its opId numbering). */
  effectsFor(t: NewTask, gate?: EffectGate, effectsFrom = 0) {
    const fx = taskEffects(
      {
        workers: this.workers,
        rules: this.d.rules,
        events: this.d.events,
        observeStep: this.d.metrics.step,
        probe: this.d.probe,
        onOutcomeRetry: (e, taskId) =>
          this.d.log.warn({ err: e, taskId }, 'effect outcome not stored in the event log; trying again'),
      },
      {
        id: t.id,
        instance: t.instance,
        sandboxId: () => t.sandboxId,
        sandbox: () => {
          const sb = t.kind === 'container' ? this.tasks.get(t.sandboxId) : undefined;
          const c = sb?.actor.getSnapshot().context;
          return c?.plan ? { pid: c.pid, plan: c.plan } : undefined;
        },
      },
      gate,
      effectsFrom,
    );
    t.effectCount = fx.effectCount;
    return fx;
  }

  /** A new task's actor (not started: its create input must reach the log first). */
  spawn(id: string, kind: Task['kind'], sandboxId: string, request: CreateTaskRequest, rid: string): Task {
    const rec = newTask({ id, kind, sandboxId, instance: randomUUID() });
    const machine = sharedMachine(kind === 'sandbox' ? sandboxMachine : containerMachine);
    const actor = createActor(machine, { input: { id, request, rid }, inspect: this.journal.inspector(rec) });
    bindEffects(actor, this.effectsFor(rec));
    const task: Task = Object.assign(rec, { actor }); // one object: the inspector holds the record
    this.wire(task);
    return task;
  }

  /** Replies, facts and the table entry of a task's actor. */
  wire(task: Task): void {
    task.actor.on('reply', (r) => this.onReply(r));
    task.actor.on('fact', (f) => {
      if (task.skip.facts > 0) {
        task.skip.facts--; // recorded before the crash, with its effects
        return;
      }
      this.onFact(task, f);
    });
    task.actor.subscribe({
      next: (snap) => {
        // A failed create whose rollback is complete leaves no task behind (Kata registers none); a
        // wait held on it gets the create's failure.
        if (!snap.hasTag('removed')) return;
        const error = snap.context.error ?? err.notFound(`task ${task.id} was removed`).toWire();
        if (this.tasks.drop(task, { ok: false, error })) queueMicrotask(() => task.actor.stop());
      },
      complete: () => {
        // Done is deleted; stopped is the agent stopping (the task lives on in its log and snapshot).
        if (task.actor.getSnapshot().status !== 'done') return;
        this.tasks.drop(task, { ok: false, error: err.notFound(`task ${task.id} was deleted`).toWire() });
      },
      error: (e) => this.d.log.error({ err: e, taskId: task.id }, 'actor crashed'),
    });
    this.tasks.add(task);
  }

  /** Feeds an input (write-ahead) to the task. */
  input(t: Task, event: LifecycleEvent, requestId?: string): Promise<void> {
    return this.journal.input(t, event, requestId);
  }

  /**
   * A worker fact (a process exit, a VM death) for the task it concerns, if it is still here; in a span
   * (`fact.exit`, ...) that the effects it leads to (a teardown) are children of.
   */
  async feedWorkerEvent(ev: WorkerEvent): Promise<void> {
    const t = this.tasks.get(ev.kind === 'vmExit' ? ev.sandboxId : ev.containerId);
    if (!t) return;
    await inSpan(`fact.${ev.kind}`, () => this.input(t, inputOf(ev)));
  }

  private onReply(r: Reply): void {
    const p = this.pending.get(r.rid);
    if (!p) return;
    this.pending.delete(r.rid);
    if (p.verb === 'create') this.d.metrics.createDone(performance.now() - p.t0, r.ok, r.ok ? undefined : r.error.code);
    p.after?.(r.ok);
    const env: Envelope<unknown> = r.ok ? { ok: true, result: r.result } : { ok: false, error: r.error };
    p.reply(env);
  }

  private onFact(t: Task, f: Fact): void {
    this.journal.fact(t, f);
    const leftovers = f.kind === 'rolledBack' ? (f.data.leftovers as unknown[]) : [];
    if (f.kind === 'rolledBack') this.d.metrics.rollback(leftovers.length === 0);
    if (f.kind === 'execExited') {
      const { exitStatus, exitedAt } = f.data;
      this.tasks.answerWaiters(t, { ok: true, result: { exitStatus, exitedAt } }, { execId: String(f.data.execId) });
    }
    if (f.kind !== 'exited' && f.kind !== 'deleted') return;
    const c = t.actor.getSnapshot().context;
    this.tasks.answerWaiters(t, { ok: true, result: { exitStatus: c.exitStatus ?? 0, exitedAt: c.exitedAt ?? 0 } });
    // The VM of a sandbox is going away: its pod containers exit 255 and release their mounts.
    if (t.kind === 'sandbox')
      for (const c of this.tasks.containersOf(t.id))
        this.input(c, { type: 'hostGone', at: Date.now() }).catch((e: unknown) =>
          this.d.log.warn({ err: e, taskId: c.id }, 'pod container not told its sandbox is gone'),
        );
  }
}

/** A worker fact as the input its task's machine takes. */
function inputOf(ev: WorkerEvent): LifecycleEvent {
  switch (ev.kind) {
    case 'exit':
      return ev.execId === undefined
        ? { type: 'exit', exitStatus: ev.exitStatus, exitedAt: ev.exitedAt }
        : { type: 'execExit', execId: ev.execId, exitStatus: ev.exitStatus, exitedAt: ev.exitedAt };
    case 'oom':
      return { type: 'oom', at: ev.at };
    case 'vmExit':
      return { type: 'hostGone', at: ev.at };
  }
}
