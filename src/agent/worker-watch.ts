/**
 * Requests in flight to each worker. When the agent sees a worker process die, every request to it
 * fails at once with Unavailable instead of waiting out its deadline: a worker killed mid-operation
 * turns into a prompt rollback (whose compensations reach the restarted worker).
 */
import { err } from '../errors.ts';
import type { WorkerKind } from '../domain/ops.ts';

export class WorkerWatch {
  private inflight = new Map<WorkerKind, Set<(e: Error) => void>>();

  /** `abandon` stops the underlying request (no re-sends) once the worker is known dead. */
  track<T>(kind: WorkerKind, op: string, p: Promise<T>, abandon?: () => void): Promise<T> {
    let set = this.inflight.get(kind);
    if (!set) this.inflight.set(kind, (set = new Set()));
    const s = set;
    return new Promise<T>((resolve, reject) => {
      const fail = (e: Error) => {
        abandon?.();
        reject(err.unavailable(`${kind} worker died during ${op}: ${e.message}`, e));
      };
      s.add(fail);
      p.then(resolve, reject).finally(() => s.delete(fail));
    });
  }

  died(kind: WorkerKind, why: string): void {
    const set = this.inflight.get(kind);
    if (!set) return;
    for (const fail of [...set]) fail(new Error(why));
    set.clear();
  }
}
