/** What `state`, `list` and `wait` show of a task: containerd's State response, plus Corral's machine state. */
import type { TaskStatus } from '../domain/task.ts';
import { hasTag, stateName, type LifecycleActor } from '../machines/index.ts';

export interface TaskView {
  id: string;
  sandboxId: string;
  kind: 'sandbox' | 'container';
  bundle: string;
  pid: number;
  status: TaskStatus;
  /** The machine's state, e.g. `booting`, `rollingBack`, `stopped`. */
  state: string;
  exitStatus: number;
  exitedAt: number;
  createdAt: number;
  error?: { code: string; message: string };
  terminal: boolean;
  stdin: string;
  stdout: string;
  stderr: string;
}

/** containerd's status, from the state's tags (lifecycle-setup.ts): untagged states are still creating. */
export function taskStatus(actor: LifecycleActor): TaskStatus {
  if (hasTag(actor, 'running')) return 'running';
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
