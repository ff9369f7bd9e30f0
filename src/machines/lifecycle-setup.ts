/**
 * The types, effects, guards and tags every lifecycle state shares (one `setup()`), and the small
 * pure helpers their actions use. `create-states.ts` and `run-states.ts` build their states with
 * this setup's typed helpers; `lifecycle.ts` assembles the machine.
 *
 * Tags say what the agent needs to know of a state without reading its value:
 * - `created` / `running` / `stopped`: containerd's task status (untagged states are `unknown`: the
 *   create is still running or rolling back);
 * - `quiet`: no effect in flight, a snapshot may be saved here;
 * - `removed`: a failed create whose rollback is complete: the task leaves the table (Kata registers none).
 */
import { assign, setup } from 'xstate';
import { notBound } from './not-bound.ts';
import type { WireError } from '../errors.ts';
import type { CgroupWrite, Compensation, Step, StepResults } from '../domain/ops.ts';
import type { CreatePlan, CreateTaskRequest, ExecProcess, ExecRecord, Fact, Reply, RunAct } from '../domain/task.ts';
import { coordinatorMachine, type CoordinatorOutput } from './coordinator.machine.ts';

export type LifecycleEvent =
  | { type: 'start'; rid: string; at: number }
  | { type: 'exec'; rid: string; execId: string; process: ExecProcess; at: number }
  | { type: 'execStart'; rid: string; execId: string; at: number }
  | { type: 'execKill'; rid: string; execId: string; signal: number; all: boolean; at: number }
  | { type: 'execDelete'; rid: string; execId: string; at: number }
  /** An exec's process exited (from the hypervisor worker). */
  | { type: 'execExit'; execId: string; exitStatus: number; exitedAt: number }
  | { type: 'pause'; rid: string; at: number }
  | { type: 'resume'; rid: string; at: number }
  | { type: 'resize'; rid: string; execId?: string; rows: number; cols: number; at: number }
  | { type: 'closeIO'; rid: string; execId?: string; at: number }
  | { type: 'update'; rid: string; limits: CgroupWrite[]; at: number }
  /** The guest's OOM killer struck in this container (before the exit it caused). */
  | { type: 'oom'; at: number }
  | { type: 'kill'; rid: string; signal: number; all: boolean; at: number }
  | { type: 'delete'; rid: string; at: number }
  /** The task's process exited (from the hypervisor worker). */
  | { type: 'exit'; exitStatus: number; exitedAt: number }
  /** The VM holding this task died or was torn down (vmExit for a sandbox, sandboxGone for a container). */
  | { type: 'hostGone'; at: number };

export interface LifecycleInput {
  id: string;
  request: CreateTaskRequest;
  /** Pairs the create reply with its NATS request. */
  rid: string;
}

/** Outputs of completed steps by step kind, and what validation returned (for configure). */
export type StepOutputs = Partial<StepResults> & { validated?: unknown };

/** A kill request: who asked, and what to send. */
export interface KillRequest {
  rid: string;
  signal: number;
  all: boolean;
}

export interface LifecycleContext {
  id: string;
  request: CreateTaskRequest;
  createRid: string | null;
  plan: CreatePlan | null;
  stepIndex: number;
  /** Outputs of completed steps by step kind (e.g. `boot` → {pid}, `createUser` → VmmUser). */
  results: StepOutputs;
  stack: Compensation[];
  leftovers: CoordinatorOutput['failed'];
  error: WireError | null;
  pid: number;
  exitStatus: number | null;
  exitedAt: number | null;
  started: boolean;
  /** The start request awaiting its effect. */
  pendingRid: string | null;
  /** The kill being signalled (first, in `running.signalling`) and those that arrived while another was, or while
   * an act ran: each is signalled and answered in turn. One key, not two: see lifecycle.ts on the context's size. */
  kills?: KillRequest[];
  deleteRids: string[];
  /** Absent until the first retry. */
  cleanupAttempts?: number;
  /** The task's execs by exec id (containerd's Exec). Optional: snapshots from before execs lack it. */
  execs?: Record<string, ExecRecord>;
  /** Frozen (`pause`) and not yet thawed. */
  paused?: boolean;
  /** The act being run (first, in `running.acting`: its request awaits the effect) and those queued behind it or
   * behind a kill. One key, not two: see lifecycle.ts on the context's size. */
  acts?: { rid: string; act: RunAct }[];
}

export type LifecycleTag = 'created' | 'running' | 'stopped' | 'quiet' | 'removed';
export type Emitted = Reply | Fact;

export const lifecycleSetup = setup({
  types: {
    input: {} as LifecycleInput,
    context: {} as LifecycleContext,
    events: {} as LifecycleEvent,
    emitted: {} as Emitted,
    tags: {} as LifecycleTag,
  },
  actors: {
    validate: notBound<unknown, CreateTaskRequest>('validate'),
    configure: notBound<CreatePlan, { request: CreateTaskRequest; validated: unknown }>('configure'),
    runStep: notBound<unknown, { id: string; step: Step; plan: CreatePlan; results: StepOutputs }>('runStep'),
    startProcess: notBound<unknown, { id: string; plan: CreatePlan }>('startProcess'),
    signal: notBound<unknown, { id: string; plan: CreatePlan; signal: number; all: boolean }>('signal'),
    act: notBound<{ guestPid?: number }, { id: string; plan: CreatePlan; act: RunAct }>('act'),
    coordinator: coordinatorMachine,
    backoff: notBound<unknown, { ms: number }>('backoff'),
  },
  guards: {
    nextIs: ({ context }, phase: Step['phase']) => context.plan?.steps[context.stepIndex]?.phase === phase,
    hasLeftovers: ({ context }) => context.leftovers.length > 0,
    deleteAsked: ({ context }) => context.deleteRids.length > 0,
    killQueued: ({ context }) => (context.kills?.length ?? 0) > 0,
    actQueued: ({ context }) => (context.acts?.length ?? 0) > 0,
    isStopSignal: ({ event }) => event.type === 'kill' && (event.signal === 9 || event.signal === 15),
  },
});

export const reply = (rid: string, result: unknown): Reply => ({ type: 'reply', rid, ok: true, result });
export const fail = (rid: string, error: WireError): Reply => ({ type: 'reply', rid, ok: false, error });
export const fact = (kind: Fact['kind'], data: Record<string, unknown>): Fact => ({ type: 'fact', kind, data });
export const precondition = (verb: string, state: string): WireError => ({
  code: 'FailedPrecondition',
  message: `cannot ${verb} task in ${state} state`,
  retryable: false,
});
export const exitInfo = (c: LifecycleContext) => ({
  exitStatus: c.exitStatus ?? 0,
  exitedAt: c.exitedAt ?? 0,
  pid: c.pid,
});
export const pidOf = (c: LifecycleContext): number => c.results.boot?.pid ?? c.plan?.hostPid ?? 0;

export function leftoverError(c: LifecycleContext): WireError {
  const what = c.leftovers.map((l) => `${l.compensation.kind} (${l.error.message})`).join('; ');
  return { code: 'FailedPrecondition', message: `cleanup still pending, retrying: ${what}`, retryable: true };
}

/** Leftover compensations: wait (growing back-off), run the coordinator on them again, re-check (`settle`). */
export const cleanupStates = {
  waiting: lifecycleSetup.createStateConfig({
    invoke: {
      id: 'backoff',
      src: 'backoff',
      input: ({ context }) => ({ ms: Math.min(60_000, 1000 * 2 ** (context.cleanupAttempts ?? 0)) }),
      onDone: 'retrying',
      onError: 'retrying',
    },
  }),
  retrying: lifecycleSetup.createStateConfig({
    invoke: {
      id: 'coordinator',
      src: 'coordinator',
      input: ({ context }) => ({ compensations: context.leftovers.map((l) => l.compensation) }),
      onDone: {
        target: 'settle',
        actions: assign(({ context, event }) => ({
          leftovers: event.output.failed,
          cleanupAttempts: (context.cleanupAttempts ?? 0) + 1,
        })),
      },
    },
  }),
};
