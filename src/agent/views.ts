/** Builds what `state`, `list` and `wait` show of a task (TaskView, ExecView: src/domain/task.ts). */
import { err } from '../errors.ts';
import type { ExecView, TaskStatus, TaskView } from '../domain/task.ts';

export type { ExecView, TaskView } from '../domain/task.ts';
import { hasTag, stateName, type LifecycleActor } from '../machines/index.ts';

/** containerd's status, from the state's tags (lifecycle-setup.ts): untagged states are still creating. */
export function taskStatus(actor: LifecycleActor): TaskStatus {
  if (hasTag(actor, 'running')) return actor.getSnapshot().context.paused ? 'paused' : 'running';
  if (hasTag(actor, 'created')) return 'created';
  if (hasTag(actor, 'stopped')) return 'stopped';
  return 'unknown';
}

export function taskView(
  actor: LifecycleActor,
  t: { id: string; sandboxId: string; kind: 'sandbox' | 'container'; createdAt: number },
): TaskView {
  const c = actor.getSnapshot().context;
  return {
    id: t.id,
    sandboxId: t.sandboxId,
    kind: t.kind,
    bundle: c.request.bundle,
    pid: c.pid,
    status: taskStatus(actor),
    state: stateName(actor),
    exitStatus: c.exitStatus ?? 0,
    exitedAt: c.exitedAt ?? 0,
    createdAt: t.createdAt,
    ...(c.error ? { error: { code: c.error.code, message: c.error.message } } : {}),
    terminal: c.request.terminal,
    stdin: c.request.stdin,
    stdout: c.request.stdout,
    stderr: c.request.stderr,
  };
}

/** The exec, or NotFound. */
export function execView(actor: LifecycleActor, execId: string): ExecView {
  const c = actor.getSnapshot().context;
  const e = c.execs?.[execId];
  if (!e) throw err.notFound(`exec ${execId} does not exist in task ${c.id}`);
  return {
    id: c.id,
    execId,
    pid: c.pid,
    guestPid: e.guestPid,
    status: e.status,
    exitStatus: e.exitStatus ?? 0,
    exitedAt: e.exitedAt ?? 0,
    terminal: e.process.terminal,
    stdin: e.process.stdin,
  };
}
