/**
 * Draining a node: mark it `draining` (compare-and-swap; no new placements), then for each task the
 * node's Task API lists (pod containers first, then sandboxes): SIGTERM, wait up to a grace period,
 * SIGKILL if it is still running, wait, delete, and release its reservation (idempotent: the agent
 * releases on delete too). The node ends `cordoned`: `uncordon` puts it back in service.
 *
 * With `policy: 'recreate'`, each task's recipe is taken before it is stopped (`recreator.prepare`:
 * a fleet-created task's spec and placement are in its create input in the event log), and once the
 * node is empty the tasks are created again through the fleet (sandboxes first, then their pod
 * containers; started again if they were running). A task that cannot travel (created from a bundle
 * path on the node) is still stopped and deleted, and reported.
 */
import { ensureError, err } from '../errors.ts';
import type { TaskVerb } from '../bus/subjects.ts';
import type { NodeRegistry } from './registry.ts';

/** Calls one verb of the node's Task API (`corral.v1.node.<node>.task.<verb>`). Injectable for tests. */
export type TaskCaller = <T>(verb: TaskVerb, body: Record<string, unknown>, timeoutMs: number) => Promise<T>;

export interface DrainOptions {
  /** The whole drain gives up (Timeout) after this long. @default 5 min */
  timeoutMs?: number;
  /** Between SIGTERM and SIGKILL, per task. @default 10 s */
  graceMs?: number;
  /** @default delete */
  policy?: 'delete' | 'recreate';
  /** Required with policy recreate (src/fleet/recreate.ts over NATS). */
  recreator?: Recreator;
}

/** Recreating a drained node's tasks elsewhere. */
export interface Recreator {
  /** Before the task is stopped: what recreating it takes. @throws FailedPrecondition when it cannot travel */
  prepare(t: TaskRow): Promise<unknown>;
  /**
   * After the node is empty: create it through the fleet (and start it if it was running); resolves with
   * the new node.
   */
  create(t: TaskRow, recipe: unknown): Promise<string>;
}

export interface DrainResult {
  node: string;
  deleted: string[];
  /** Policy recreate: where each task went. */
  recreated: { id: string; node: string }[];
  failed: { id: string; code: string; message: string }[];
}

export interface TaskRow {
  id: string;
  sandboxId?: string;
  kind?: string;
  status?: string;
  exitStatus?: number;
}

/**
 * Drain `node`. `progress` gets one human line per step.
 * @throws InvalidArgument (policy recreate without a recreator), NotFound (not registered),
 *   FailedPrecondition (lost), Timeout (past `timeoutMs`; what was done stays done), Unavailable (the
 *   node does not answer `list`).
 */
export async function drainNode(
  registry: NodeRegistry,
  node: string,
  task: TaskCaller,
  opts: DrainOptions = {},
  progress: (line: string) => void = () => {
    // No listener: the result says what was done.
  },
): Promise<DrainResult> {
  const recreator = opts.policy === 'recreate' ? opts.recreator : undefined;
  if (opts.policy === 'recreate' && !recreator) throw err.invalid('drain policy recreate needs a recreator');
  const until = Date.now() + (opts.timeoutMs ?? 300_000);
  const grace = opts.graceMs ?? 10_000;
  const left = () => {
    const ms = until - Date.now();
    if (ms <= 0) throw err.timeout(`drain of ${node} did not finish within ${opts.timeoutMs ?? 300_000} ms`);
    return ms;
  };

  await registry.setState(node, 'drain');
  const { tasks } = await task<{ tasks: TaskRow[] }>('list', {}, Math.min(30_000, left()));
  const order = [...tasks].sort((a, b) => (a.kind === b.kind ? 0 : a.kind === 'container' ? -1 : 1));
  progress(
    `draining ${node}: no new sandboxes; ${order.length} task(s) to stop and delete` +
      (recreator ? ', then recreate elsewhere' : ''),
  );
  const result: DrainResult = { node, deleted: [], recreated: [], failed: [] };
  const recipes = new Map<string, unknown>();
  for (const [i, t] of order.entries()) {
    const tag = `[${i + 1}/${order.length}] ${t.id}`;
    if (recreator) {
      try {
        recipes.set(t.id, await recreator.prepare(t));
      } catch (e) {
        const ce = ensureError(e);
        result.failed.push({ id: t.id, code: ce.code, message: `not recreated: ${ce.message}` });
        progress(`${tag}: cannot be recreated (${ce.message}); stopping and deleting it`);
      }
    }
    try {
      if (t.status !== 'stopped') {
        await task('kill', { id: t.id, signal: 'SIGTERM', all: true }, Math.min(30_000, left())).catch(tolerateStopped);
        progress(`${tag}: SIGTERM sent, waiting up to ${Math.round(grace / 1000)} s`);
        const exited = await task<{ exitStatus: number }>(
          'wait',
          { id: t.id, timeoutMs: Math.min(grace, left()) },
          Math.min(grace, left()) + 5_000,
        ).catch((e: unknown) => {
          if (ensureError(e).code === 'Timeout') return undefined;
          throw e;
        });
        if (!exited) {
          progress(`${tag}: still running after ${Math.round(grace / 1000)} s, SIGKILL`);
          await task('kill', { id: t.id, signal: 'SIGKILL', all: true }, Math.min(30_000, left())).catch(
            tolerateStopped,
          );
          await task('wait', { id: t.id, timeoutMs: Math.min(30_000, left()) }, Math.min(30_000, left()) + 5_000);
        }
      }
      const d = await task<{ exitStatus: number }>('delete', { id: t.id }, Math.min(120_000, left())).catch(
        (e: unknown) => {
          if (ensureError(e).code === 'NotFound') return undefined; // deleted meanwhile: gone is what we want
          throw e;
        },
      );
      await registry.release(node, t.id).catch((e: unknown) => {
        // Not fatal: the node's agent releases a deleted task's capacity itself.
        progress(`${tag}: capacity not released here (${ensureError(e).message}); the agent releases it`);
      });
      result.deleted.push(t.id);
      progress(`${tag}: ${d ? `deleted (exit status ${d.exitStatus})` : 'already gone'}`);
    } catch (e) {
      const ce = ensureError(e);
      if (ce.code === 'Timeout' && Date.now() >= until) throw ce;
      result.failed.push({ id: t.id, code: ce.code, message: ce.message });
      progress(`${tag}: failed: ${ce.code}: ${ce.message}`);
    }
  }
  // Sandboxes first (pod containers need theirs), i.e. the reverse of the stopping order.
  for (const t of [...order].reverse()) {
    if (!recreator || !recipes.has(t.id) || !result.deleted.includes(t.id)) continue;
    try {
      const to = await recreator.create(t, recipes.get(t.id));
      result.recreated.push({ id: t.id, node: to });
      progress(`${t.id}: recreated on ${to}${t.status === 'running' ? ' and started' : ''}`);
    } catch (e) {
      const ce = ensureError(e);
      result.failed.push({ id: t.id, code: ce.code, message: `deleted, not recreated: ${ce.message}` });
      progress(`${t.id}: not recreated: ${ce.code}: ${ce.message}`);
    }
  }
  await registry.setState(node, 'drained');
  progress(
    `drained ${node}: ${result.deleted.length} deleted` +
      (recreator ? `, ${result.recreated.length} recreated elsewhere` : '') +
      `, ${result.failed.length} failed; the node stays cordoned (corral fleet uncordon ${node} to use it again)`,
  );
  return result;
}

/** A kill of a task that is already stopped, or gone, is what the drain wanted anyway. */
function tolerateStopped(e: unknown): void {
  const c = ensureError(e).code;
  if (c !== 'FailedPrecondition' && c !== 'NotFound') throw e;
}
