/**
 * The agent's event-log writer: every input is appended before the actor consumes it (write-ahead),
 * every fact in the order the actor emitted it, every state the actor reached (replay compares
 * against these), and at quiet states (no effect in flight) a snapshot of the actor with the stream
 * sequence its state record got, so recovery can start there. Inputs, states and some facts share
 * messages (eventlog.ts Share): a state record and the facts before it go out with the next input, or with
 * the quiet state after them.
 */
import type { InspectionEvent, SnapshotFrom } from 'xstate';
import type { EventAppender } from '../bus/eventlog.ts';
import type { Snapshots } from '../bus/snapshots.ts';
import type { Fact } from '../domain/task.ts';
import type { LifecycleEvent, LifecycleMachine } from '../machines/index.ts';
import type { Logger } from '../log.ts';
import { Lanes } from '../util/lanes.ts';
import { appendStored } from './append-stored.ts';
import { activeTraceparent } from '../util/trace.ts';
import type { NewTask, Task } from './task-table.ts';

export interface JournalDeps {
  events: EventAppender;
  snapshots?: Snapshots;
  log: Logger;
  /** Whether the task is still in the table (a snapshot of a removed task must not be saved). */
  isLive: (t: Task) => boolean;
}

export class TaskJournal {
  /** Snapshot saves and removals of one task id, in order (a removal never overtaken by a save). */
  private readonly snapshotLanes = new Lanes();

  constructor(private readonly d: JournalDeps) {}

  /**
   * Write-ahead: store the input (tried again until stored while the task is live: append-stored.ts),
   * then let the actor consume it. A request's input carries the span it was served in (`trace`, a
   * traceparent): recovery links to it if the agent dies before it is done.
   */
  async input(t: Task, event: LifecycleEvent, requestId?: string): Promise<void> {
    const trace = activeTraceparent();
    await appendStored(
      this.d.events,
      t.sandboxId,
      'input',
      { taskId: t.id, event, ...(requestId ? { requestId } : {}), ...(trace ? { trace } : {}) },
      {
        stop: () => !this.d.isLive(t),
        onRetry: (e) => this.d.log.warn({ err: e, taskId: t.id }, 'input not stored in the event log; trying again'),
        share: 'join', // goes now, with the state record and stepDone fact before it
      },
    );
    // An actor that finished meanwhile takes nothing more (the caller answers what it asked).
    if (t.actor.getSnapshot().status === 'active') t.actor.send(event);
  }

  /**
   * Appends a fact (in emission order: the log keeps one chain per sandbox). Held like an input (eventlog.ts
   * HoldOptions): past its deadline it keeps the sandbox's lane and is sent again under its Nats-Msg-Id
   * until stored, for a log without its `created` or `deleted` no longer replays. Only a closed
   * connection ends it (the agent is stopping).
   */
  fact(t: Task, f: Fact): void {
    // A stepDone, created or started waits for the state record after it (eventlog.ts SHARED_KINDS, Share);
    // other facts go alone, by their subject.
    this.d.events
      .append(t.sandboxId, f.kind, { taskId: t.id, ...f.data }, undefined, this.holdFor(t, f.kind), 'wait')
      .catch((e: unknown) => this.d.log.error({ err: e, taskId: t.id }, 'event log append failed'));
  }

  private holdFor(t: Task, kind: string) {
    return {
      onRetry: (e: unknown) =>
        this.d.log.warn({ err: e, taskId: t.id, kind }, 'record not stored in the event log; trying again'),
    };
  }

  /** The inspection observer of a task's actor: logs each transition and records the state it led to. */
  inspector(task: NewTask): (ev: InspectionEvent) => void {
    const alog = this.d.log.child({ sandboxId: task.sandboxId, taskId: task.id, machine: task.kind });
    let last = '';
    return (ev) => {
      if (ev.type !== '@xstate.snapshot' || !task.actor || ev.actorRef !== task.actor) return;
      const snap = ev.snapshot as SnapshotFrom<LifecycleMachine>; // the root actor's own snapshot
      const s = JSON.stringify(snap.value);
      const recovering = task.skip.states > 0;
      if (s !== last) {
        alog.info({ state: s, event: ev.event.type, ...(recovering ? { recovering } : {}) }, 'transition');
        last = s;
      }
      if (recovering) {
        task.skip.states--; // already in the log: this is a replay
        return;
      }
      const quiet = snap.hasTag('quiet');
      const t = task as Task;
      const record = { taskId: task.id, value: snap.value, event: ev.event.type };
      // A quiet state's sequence is its snapshot's starting point: no later record shares its message, nor one
      // of a finished actor (nothing follows it). Any other waits for the next input to share one (eventlog.ts
      // Share): an effect is in flight, and its outcome comes next.
      const share = quiet || snap.status !== 'active' ? 'close' : 'wait';
      this.d.events.append(task.sandboxId, 'state', record, undefined, this.holdFor(t, 'state'), share).then(
        (seq) => quiet && this.snapshot(t, seq),
        // the append failed (the event log does not log it): nothing to snapshot
        (e: unknown) => alog.error({ err: e, kind: 'state' }, 'event log append failed'),
      );
    };
  }

  /** Saves the actor at a quiet state, after the saves before it, and only while the task is live. */
  private snapshot(t: Task, seq: number): void {
    const snapshots = this.d.snapshots;
    if (!snapshots || !t.effectCount) return;
    const save = {
      seq,
      taskId: t.id,
      sandboxId: t.sandboxId,
      machine: t.kind,
      instance: t.instance,
      effects: t.effectCount(),
      createdAt: t.createdAt,
      snapshot: t.actor.getPersistedSnapshot(),
    };
    this.snapshotLanes
      .run(t.id, () => (this.d.isLive(t) ? snapshots.save(save) : Promise.resolve()))
      .catch((e: unknown) => this.d.log.warn({ err: e, taskId: t.id }, 'snapshot not saved'));
  }

  /** The task is gone: its snapshot goes, after any save still queued. */
  removeSnapshot(t: Task): void {
    const snapshots = this.d.snapshots;
    if (!snapshots) return;
    this.snapshotLanes
      .run(t.id, () => snapshots.remove(t.id))
      .catch((e: unknown) => this.d.log.warn({ err: e, taskId: t.id }, 'snapshot not removed'));
  }
}
