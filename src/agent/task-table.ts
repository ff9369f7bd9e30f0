/**
 * The agent's table of live tasks (sandboxes and pod containers), each with its actor and what waits
 * on it. A task leaves the table when it is deleted or its failed create has rolled back; whatever
 * still waits on it is answered then, so no wait is left hanging.
 */
import { err } from '../errors.ts';
import type { Envelope } from '../bus/rpc.ts';
import type { LifecycleActor } from '../machines/index.ts';

/** Where a request's answer goes: its NATS reply subject, or (with a requestId) every copy of it. */
export type ReplyTo = (env: Envelope<unknown>) => void;

export interface Waiter {
  reply: ReplyTo;
  timer?: NodeJS.Timeout;
  /** Waits for this exec of the task, not for the task's own process. */
  execId?: string;
}

export interface Task {
  id: string;
  kind: 'sandbox' | 'container';
  sandboxId: string;
  /** This actor's incarnation: the first part of every opId it sends (effects.ts). */
  instance: string;
  actor: LifecycleActor;
  waiters: Waiter[];
  createdAt: number;
  /** Facts and state records still to be skipped: during recovery they are already in the log. */
  skip: { facts: number; states: number };
  /** How many effects the task has invoked (its opId numbering); set once its effects are bound. */
  effectCount?: () => number;
}

/** A task record before its actor exists (the actor needs the record's effects and inspector). */
export type NewTask = Omit<Task, 'actor'> & { actor?: LifecycleActor };

export function newTask(t: Pick<Task, 'id' | 'kind' | 'sandboxId' | 'instance'>): NewTask {
  return { ...t, waiters: [], createdAt: Date.now(), skip: { facts: 0, states: 0 } };
}

export class TaskTable {
  private readonly tasks = new Map<string, Task>();

  /** `onDrop`: the task left the table (its snapshot goes). */
  constructor(private readonly onDrop: (t: Task) => void) {}

  get size(): number {
    return this.tasks.size;
  }
  get(id: string): Task | undefined {
    return this.tasks.get(id);
  }
  has(id: string): boolean {
    return this.tasks.has(id);
  }
  values(): Task[] {
    return [...this.tasks.values()];
  }
  ids(): string[] {
    return [...this.tasks.keys()];
  }
  /** Whether `t` is the live task of its id (not a removed one, nor an older one with the same id). */
  isLive(t: Task): boolean {
    return this.tasks.get(t.id) === t;
  }
  /** The pod containers of a sandbox. */
  containersOf(sandboxId: string): Task[] {
    return this.values().filter((c) => c.kind === 'container' && c.sandboxId === sandboxId);
  }

  /** The task, or NotFound in containerd's words. */
  lookup(id: string): Task {
    const t = this.tasks.get(id);
    if (!t) throw err.notFound(`container does not exist ${id}`);
    return t;
  }

  add(t: Task): void {
    this.tasks.set(t.id, t);
  }

  /** Take a task whose record was added but whose create never reached the log. */
  forget(t: Task): void {
    if (this.isLive(t)) this.tasks.delete(t.id);
  }

  /**
   * Answer the waiters of `t` with `env` (an exit, a deletion, a failure): those of one process (the
   * task's own when `execId` is undefined), or with `all` every one.
   */
  answerWaiters(t: Task, env: Envelope<unknown>, which: { execId?: string } | 'all' = {}): void {
    const hit = (w: Waiter) => which === 'all' || w.execId === which.execId;
    const answered = t.waiters.filter(hit);
    t.waiters = t.waiters.filter((w) => !hit(w));
    for (const w of answered) {
      clearTimeout(w.timer);
      w.reply(env);
    }
  }

  /**
   * The task ends: it leaves the table, whatever still waits on it is answered with `env`, and
   * `onDrop` runs. False when it had left already.
   */
  drop(t: Task, env: Envelope<unknown>): boolean {
    if (!this.isLive(t)) return false;
    this.tasks.delete(t.id);
    this.answerWaiters(t, env, 'all');
    this.onDrop(t);
    return true;
  }
}
