/**
 * After a restart: rebuild every task of this node from the event log (replay/rebuild.ts, with the
 * recorded outcome of each effect), then let whatever was in flight run for real with its original
 * opIds, so workers answer with their first outcome. Facts and states already in the log are not
 * written again. Creates and deletes recorded with a requestId become answerable again, and the worker facts
 * that arrived while the agent was down are fed to their tasks. All of it in the span `recovery`.
 */
import { matchesState, type StateValue } from 'xstate';
import { err, type WireError } from '../errors.ts';
import type { WorkerEvent } from '../domain/ops.ts';
import type { StartingPoint } from '../domain/snapshot.ts';
import { hasTag, stateName } from '../machines/index.ts';
import { EffectGate } from '../replay/gate.ts';
import { rebuild } from '../replay/rebuild.ts';
import type { EventRecord } from '../bus/eventlog-reader.ts';
import type { RequestLedger } from './idempotency.ts';
import type { TaskRuntime } from './task-runtime.ts';
import { newTask, type NewTask, type Task } from './task-table.ts';
import { inSpan, linkTo, type Link, type Span } from '../util/trace.ts';

const isCreate = (r: EventRecord) =>
  r.kind === 'input' && (r.event as { type?: string } | undefined)?.type === 'create';
/** The task ended for good: deleted, or its failed create rolled back completely. */
const ends = (r: EventRecord) =>
  r.kind === 'deleted' || (r.kind === 'state' && matchesState('failed.clean', r.value as StateValue));

/** What recovery did, and how long its parts took (ms): the log read, the snapshots read, the rebuild and the rest. */
type Recovered = { tasks: number; resumed: string[]; phases: { read: number; snapshots: number; rebuild: number } };

/**
 * Recovery is a trace of its own: the span `recovery`, linked to the span of each request it takes
 * over (the `trace` recorded with a task's last request input: a create, a start, a delete, ...),
 * parent of the effects it lets run for real.
 */
export function recover<M>(rt: TaskRuntime, ledger: RequestLedger<M>): Promise<Recovered> {
  return inSpan('recovery', (span) => recoverTasks(rt, ledger, span), { root: true });
}

/** Links to the recorded requests of the tasks whose effects were in flight (each task's last traced input). */
function interrupted(records: EventRecord[], taskIds: Set<string>): Link[] {
  const last = new Map<string, EventRecord>();
  for (const r of records)
    if (r.kind === 'input' && typeof r.trace === 'string' && r.taskId && taskIds.has(r.taskId)) last.set(r.taskId, r);
  return [...last.values()].flatMap((r) => {
    const type = (r.event as { type?: unknown } | undefined)?.type;
    const link = linkTo(r.trace, { 'corral.task_id': r.taskId!, 'corral.request': String(type) });
    return link ? [link] : [];
  });
}

async function recoverTasks<M>(rt: TaskRuntime, ledger: RequestLedger<M>, span: Span): Promise<Recovered> {
  const { d, tasks } = rt;
  const t0 = performance.now();
  // The snapshots are read while the log is (two reads, one wait).
  const savedP = d.snapshots ? d.snapshots.all() : Promise.resolve([]);
  savedP.catch(() => {
    // awaited below, after the log's read: a failure is thrown there
  });
  const records = await d.readLog();
  const t1 = performance.now();
  const bySandbox = new Map<string, EventRecord[]>();
  for (const r of records) {
    const list = bySandbox.get(r.sandbox);
    if (list) list.push(r);
    else bySandbox.set(r.sandbox, [r]);
  }
  // A snapshot is a starting point only while the log still holds the state record it was saved at:
  // one whose records were purged (its task ended long ago) must never rebuild the task.
  const saved = await savedP;
  const t2 = performance.now();
  const usable = (sn: StartingPoint) =>
    (bySandbox.get(sn.sandboxId) ?? []).some((r) => r.seq === sn.seq && r.taskId === sn.taskId);
  const snaps = new Map<string, StartingPoint[]>();
  for (const sn of saved.filter(usable)) snaps.set(sn.sandboxId, [...(snaps.get(sn.sandboxId) ?? []), sn]);
  const gate = new EffectGate();
  const rebuilding = new Map<string, NewTask>();
  const record = (t: { taskId: string; machine: Task['kind']; sandboxId: string; instance: string }) => {
    let rec = rebuilding.get(t.taskId);
    if (!rec)
      rebuilding.set(
        t.taskId,
        (rec = newTask({ id: t.taskId, kind: t.machine, sandboxId: t.sandboxId, instance: t.instance })),
      );
    return rec;
  };
  const deletes = resumeDeletes(rt, ledger, records);
  for (const [sandbox, recs] of bySandbox) {
    const created = recs.filter(isCreate).map((r) => r.taskId);
    const gone = new Set(recs.filter(ends).map((r) => r.taskId));
    const from = (snaps.get(sandbox) ?? []).filter((sn) => !gone.has(sn.taskId));
    if (from.length === 0 && created.every((id) => gone.has(id))) continue;
    const r = await rebuild(recs, {
      gate,
      from,
      stopOnDivergence: false,
      effects: (t, g) => rt.effectsFor(record(t), g, t.effectsFrom),
      inspect: (t) => rt.journal.inspector(record(t)),
      onTask: (t) => {
        const task: Task = Object.assign(record(t), { actor: t.actor });
        // A restored actor's first snapshot is the state it was saved in: already in the log.
        task.skip = { facts: t.recorded.facts, states: t.recorded.states + (t.fromSnapshot ? 1 : 0) };
        rt.wire(task);
      },
    });
    if (r.divergence)
      d.log.error(
        { sandboxId: sandbox, divergence: r.divergence },
        'recovery: the rebuilt state differs from the recorded one',
      );
  }
  const resumed = gate.pending().map((p) => `${p.taskId}:${p.name}`);
  span.addLinks(interrupted(records, new Set(gate.pending().map((p) => p.taskId))));
  span.setAttribute('corral.resumed', resumed);
  resumeRequests(rt, ledger, records);
  unrebuiltDeletes(rt, ledger, deletes);
  gate.goLive();
  // Exits and VM deaths the workers reported while this agent was down (duplicates are ignored by the machines).
  const createdAt = new Map<string, number>();
  for (const r of records) if (isCreate(r) && r.taskId) createdAt.set(r.taskId, r.seq);
  for (const r of records) {
    const ev = r.kind === 'worker' ? (r.event as WorkerEvent | undefined) : undefined;
    const id = ev && (ev.kind === 'vmExit' ? ev.sandboxId : ev.containerId);
    if (ev && id && tasks.has(id) && r.seq > (createdAt.get(id) ?? Infinity))
      await rt.feedWorkerEvent(ev).catch((e: unknown) => d.log.error({ err: e }, 'worker fact lost in recovery'));
  }
  // Snapshots no live task owns (stale, or left by a delete an older agent did not finish) go.
  const stale = saved.filter((sn) => !tasks.has(sn.taskId)).map((sn) => sn.taskId);
  for (const id of stale) await d.snapshots?.remove(id);
  if (stale.length > 0) d.log.info({ snapshots: stale }, 'recovery: removed snapshots no live task owns');
  const phases = { read: t1 - t0, snapshots: t2 - t1, rebuild: performance.now() - t2 };
  return { tasks: tasks.size, resumed, phases };
}

/**
 * After a restart, creates recorded with a requestId are answerable again: a repeat of one still in
 * flight joins it; a repeat of a finished one gets its outcome from the log.
 */
function resumeRequests<M>(rt: TaskRuntime, ledger: RequestLedger<M>, records: EventRecord[]): void {
  const open = new Map<string, { key: string; rid: string }>();
  for (const r of records) {
    const ev = r.event as { type?: string; rid?: string } | undefined;
    if (isCreate(r) && typeof r.requestId === 'string' && r.taskId && ev?.rid)
      open.set(r.taskId, { key: `${r.taskId}/${r.requestId}`, rid: ev.rid });
    const o = r.taskId ? open.get(r.taskId) : undefined;
    if (!o || (r.kind !== 'created' && r.kind !== 'rolledBack')) continue;
    ledger.settle(
      o.key,
      r.kind === 'created' ? { ok: true, result: { pid: r.pid } } : { ok: false, error: r.error as WireError },
    );
    open.delete(r.taskId!);
  }
  for (const [id, o] of open) {
    const t = rt.tasks.get(id);
    if (!t || rt.expects(o.rid)) continue;
    const ctx = t.actor.getSnapshot().context;
    const onCreatePath = !hasTag(t.actor, 'created') && !hasTag(t.actor, 'running') && !hasTag(t.actor, 'stopped');
    if (onCreatePath) {
      // still on the create path (or rolling it back): not answered yet
      ledger.admit(o.key, undefined);
      rt.expect(o.rid, { reply: (env) => ledger.settle(o.key, env), verb: 'create', t0: performance.now() });
    } else if (stateName(t.actor) === 'failed') {
      ledger.settle(o.key, { ok: false, error: ctx.error! });
    } else {
      // finished during recovery, its fact not yet in the log
      ledger.settle(o.key, { ok: true, result: { pid: ctx.pid } });
    }
  }
}

/**
 * Deletes recorded with a requestId, likewise (a client re-sends one whose agent died under it): a repeat
 * of one done gets the exit info of its `deleted` fact, the reply it would have had, instead of NotFound;
 * one not done yet is expected before the rebuild, so that its reply reaches the ledger whether the
 * teardown ends in the rebuild itself (its last outcome was stored) or live. Returns those still open.
 */
function resumeDeletes<M>(rt: TaskRuntime, ledger: RequestLedger<M>, records: EventRecord[]): OpenDelete[] {
  const open = new Map<string, OpenDelete[]>();
  for (const r of records) {
    const ev = r.event as { type?: string; rid?: string } | undefined;
    if (r.kind === 'input' && ev?.type === 'delete' && typeof r.requestId === 'string' && r.taskId && ev.rid)
      open.set(r.taskId, [
        ...(open.get(r.taskId) ?? []),
        { taskId: r.taskId, key: `${r.taskId}/${r.requestId}`, rid: ev.rid },
      ]);
    if (r.kind !== 'deleted' || !r.taskId) continue;
    const result = { exitStatus: r.exitStatus, exitedAt: r.exitedAt, pid: r.pid };
    for (const o of open.get(r.taskId) ?? []) ledger.settle(o.key, { ok: true, result });
    open.delete(r.taskId);
  }
  const still = [...open.values()].flat();
  for (const o of still) {
    ledger.admit(o.key, undefined);
    rt.expect(o.rid, { reply: (env) => ledger.settle(o.key, env), verb: 'command', t0: performance.now() });
  }
  return still;
}

/** After the rebuild: an open delete whose task was not rebuilt gets no reply: NotFound, as live. */
function unrebuiltDeletes<M>(rt: TaskRuntime, ledger: RequestLedger<M>, open: OpenDelete[]): void {
  for (const o of open) {
    if (!rt.expects(o.rid) || rt.tasks.get(o.taskId)) continue;
    rt.forget(o.rid);
    ledger.settle(o.key, { ok: false, error: err.notFound(`task ${o.taskId} not found`).toWire() });
  }
}

type OpenDelete = { taskId: string; key: string; rid: string };
