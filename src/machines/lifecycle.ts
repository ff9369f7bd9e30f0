/**
 * The task lifecycle both sandboxes and pod containers follow (containerd's task states, Kata's
 * create semantics), as one pure statechart builder. `sandbox.machine.ts` and `container.machine.ts`
 * instantiate it; they differ in the steps their plan holds and in which event means "the VM is gone".
 *
 * validating → configuring → (mounting | preparingUser | booting)* → created → starting → running
 *   → stopping → stopped → deleted; any create step failing → rollingBack → failed.
 *
 * Every completed step pushes its compensation; teardown and rollback both run the coordinator over
 * the stack, newest first. Compensations that still fail are kept (`leftovers`) and retried in
 * `cleaningUp` until they succeed: never dropped.
 *
 * Inputs carry their own timestamps (`at`), so the machine never reads a clock: replaying the
 * recorded inputs rebuilds the same states.
 */
import { assign, emit, enqueueActions, fromPromise, setup, stateIn, type ActorRefFrom } from 'xstate';
import type { WireError } from '../errors.ts';
import type { Compensation, Step, StepResults } from '../domain/ops.ts';
import type { CreatePlan, CreateTaskRequest, Fact, Reply } from '../domain/task.ts';
import { coordinatorMachine, toWire, type CoordinatorOutput } from './coordinator.machine.ts';
import { compensationOf, compensationOfFailed } from './compensation.ts';

export type LifecycleEvent =
  | { type: 'start'; rid: string; at: number }
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
  /** The start or kill request awaiting its effect. */
  pendingRid: string | null;
  pendingKill: { signal: number; all: boolean } | null;
  deleteRids: string[];
  cleanupAttempts: number;
}

type Emitted = Reply | Fact;
const notBound = <O, I>(name: string) =>
  fromPromise<O, I>(async () => {
    throw new Error(`effect ${name} is not bound`);
  });

const reply = (rid: string, result: unknown): Reply => ({ type: 'reply', rid, ok: true, result });
const fail = (rid: string, error: WireError): Reply => ({ type: 'reply', rid, ok: false, error });
const precondition = (verb: string, state: string): WireError => ({
  code: 'FailedPrecondition',
  message: `cannot ${verb} task in ${state} state`,
  retryable: false,
});
const exitInfo = (c: LifecycleContext) => ({ exitStatus: c.exitStatus ?? 0, exitedAt: c.exitedAt ?? 0, pid: c.pid });
export function lifecycleMachine(kind: 'sandbox' | 'container') {
  return setup({
    types: {
      input: {} as LifecycleInput,
      context: {} as LifecycleContext,
      events: {} as LifecycleEvent,
      emitted: {} as Emitted,
    },
    actors: {
      validate: notBound<unknown, CreateTaskRequest>('validate'),
      configure: notBound<CreatePlan, { request: CreateTaskRequest; validated: unknown }>('configure'),
      runStep: notBound<unknown, { id: string; step: Step; plan: CreatePlan; results: StepOutputs }>('runStep'),
      startProcess: notBound<unknown, { id: string; plan: CreatePlan }>('startProcess'),
      signal: notBound<unknown, { id: string; plan: CreatePlan; signal: number; all: boolean }>('signal'),
      coordinator: coordinatorMachine,
      backoff: notBound<unknown, { ms: number }>('backoff'),
    },
    guards: {
      stepsLeft: ({ context }) => context.plan !== null && context.stepIndex < context.plan.steps.length,
      nextIs: ({ context }, phase: Step['phase']) => context.plan?.steps[context.stepIndex]?.phase === phase,
      hasLeftovers: ({ context }) => context.leftovers.length > 0,
      deleteAsked: ({ context }) => context.deleteRids.length > 0,
      isStopSignal: ({ event }) => event.type === 'kill' && (event.signal === 9 || event.signal === 15),
    },
  }).createMachine({
    id: kind,
    context: ({ input }) => ({
      id: input.id,
      request: input.request,
      createRid: input.rid,
      plan: null,
      stepIndex: 0,
      results: {},
      stack: [],
      leftovers: [],
      error: null,
      pid: 0,
      exitStatus: null,
      exitedAt: null,
      started: false,
      pendingRid: null,
      pendingKill: null,
      deleteRids: [],
      cleanupAttempts: 0,
    }),
    initial: 'validating',
    // Commands not accepted by the current state end here: FailedPrecondition naming the state.
    on: {
      start: { actions: refuse('start') },
      kill: { actions: refuse('kill') },
      delete: { actions: refuse('delete') },
    },
    states: {
      validating: {
        invoke: {
          id: 'validate',
          src: 'validate',
          input: ({ context }) => context.request,
          onDone: { target: 'configuring', actions: assign({ results: ({ event }) => ({ validated: event.output }) }) },
          onError: { target: 'rollingBack', actions: assign({ error: ({ event }) => toWire(event.error) }) },
        },
      },
      configuring: {
        invoke: {
          id: 'configure',
          src: 'configure',
          input: ({ context }) => ({ request: context.request, validated: context.results.validated }),
          onDone: { target: 'advancing', actions: assign({ plan: ({ event }) => event.output }) },
          onError: { target: 'rollingBack', actions: assign({ error: ({ event }) => toWire(event.error) }) },
        },
      },
      advancing: {
        always: [
          { guard: { type: 'nextIs', params: 'mounting' }, target: 'mounting' },
          { guard: { type: 'nextIs', params: 'preparingUser' }, target: 'preparingUser' },
          { guard: { type: 'nextIs', params: 'booting' }, target: 'booting' },
          {
            target: 'created',
            actions: [
              assign({ pid: ({ context }) => pidOf(context) }),
              emit(
                ({ context }) =>
                  ({
                    type: 'fact',
                    kind: 'created',
                    data: {
                      pid: context.pid,
                      bundle: context.request.bundle,
                      sandboxId: context.plan?.sandboxId,
                      containerType: context.plan?.type,
                    },
                  }) as Fact,
              ),
              emit(({ context }) => reply(context.createRid!, { pid: context.pid })),
              assign({ createRid: null }),
            ],
          },
        ],
      },
      mounting: stepState(),
      preparingUser: stepState(),
      booting: stepState(),
      rollingBack: {
        invoke: {
          id: 'coordinator',
          src: 'coordinator',
          input: ({ context }) => ({ compensations: [...context.stack].reverse() }),
          onDone: {
            target: 'failed',
            actions: [
              assign({ leftovers: ({ event }) => event.output.failed, stack: [] }),
              emit(
                ({ context, event }) =>
                  ({
                    type: 'fact',
                    kind: 'rolledBack',
                    data: {
                      error: context.error,
                      undone: event.output.done.map((c) => c.undoes),
                      leftovers: event.output.failed,
                    },
                  }) as Fact,
              ),
              emit(({ context }) => fail(context.createRid!, context.error!)),
              assign({ createRid: null }),
            ],
          },
        },
      },
      failed: {
        initial: 'settle',
        states: {
          settle: { always: [{ guard: 'hasLeftovers', target: 'waiting' }, { target: 'clean' }] },
          ...cleanupStates(),
          clean: {},
        },
        on: {
          delete: [
            { guard: 'hasLeftovers', actions: emit(({ event, context }) => fail(event.rid, leftoverError(context))) },
            { target: 'deleted', actions: assign({ deleteRids: ({ event }) => [event.rid] }) },
          ],
          kill: { actions: emit(({ event }) => reply(event.rid, {})) },
        },
      },
      created: {
        on: {
          start: { target: 'starting', actions: assign({ pendingRid: ({ event }) => event.rid }) },
          kill: {
            target: 'stopping',
            actions: [
              assign({ exitStatus: ({ event }) => 128 + event.signal, exitedAt: ({ event }) => event.at }),
              emit(({ event }) => reply(event.rid, {})),
            ],
          },
          // Never started: nothing exited, so no exit is published; the delete fact follows the teardown.
          delete: {
            target: 'stopping',
            actions: assign({ deleteRids: ({ event }) => [event.rid], exitedAt: ({ event }) => event.at }),
          },
          hostGone: { target: 'stopping', actions: assign({ exitStatus: 255, exitedAt: ({ event }) => event.at }) },
        },
      },
      starting: {
        invoke: {
          id: 'startProcess',
          src: 'startProcess',
          input: ({ context }) => ({ id: context.id, plan: context.plan! }),
          onDone: {
            target: 'running',
            actions: [
              emit(({ context }) => reply(context.pendingRid!, { pid: context.pid })),
              emit(({ context }) => ({ type: 'fact', kind: 'started', data: { pid: context.pid } }) as Fact),
              assign({ pendingRid: null, started: true }),
            ],
          },
          onError: {
            // Kata: a failed start makes Wait return 255. Corral also tears the task down so nothing lingers.
            target: 'stopping',
            actions: [
              emit(({ context, event }) => fail(context.pendingRid!, toWire(event.error))),
              assign({ pendingRid: null, exitStatus: 255, exitedAt: 0 }),
            ],
          },
        },
        on: {
          exit: {
            actions: assign({ exitStatus: ({ event }) => event.exitStatus, exitedAt: ({ event }) => event.exitedAt }),
          },
        },
      },
      running: {
        initial: 'idle',
        states: {
          idle: {},
          signalling: {
            invoke: {
              id: 'signal',
              src: 'signal',
              input: ({ context }) => ({ id: context.id, plan: context.plan!, ...context.pendingKill! }),
              onDone: {
                target: 'idle',
                actions: [
                  emit(({ context }) => reply(context.pendingRid!, {})),
                  assign({ pendingRid: null, pendingKill: null }),
                ],
              },
              onError: {
                target: 'idle',
                actions: [
                  emit(({ context, event }) => fail(context.pendingRid!, toWire(event.error))),
                  assign({ pendingRid: null, pendingKill: null }),
                ],
              },
            },
          },
        },
        always: { guard: ({ context }) => context.exitStatus !== null, target: 'stopping' },
        on: {
          kill: {
            target: '.signalling',
            actions: assign({
              pendingRid: ({ event }) => event.rid,
              pendingKill: ({ event }) => ({ signal: event.signal, all: event.all }),
            }),
          },
          // The process may exit before the signal's own reply is in: the kill waiting for it is answered too.
          exit: {
            target: 'stopping',
            actions: enqueueActions(({ context, event, enqueue }) => {
              if (context.pendingKill && context.pendingRid) enqueue.emit(reply(context.pendingRid, {}) as never);
              enqueue.assign({
                exitStatus: event.exitStatus,
                exitedAt: event.exitedAt,
                pendingRid: null,
                pendingKill: null,
              });
            }),
          },
          hostGone: {
            target: 'stopping',
            actions: enqueueActions(({ context, event, enqueue }) => {
              if (context.pendingKill && context.pendingRid) enqueue.emit(reply(context.pendingRid, {}) as never);
              enqueue.assign({ exitStatus: 255, exitedAt: event.at, pendingRid: null, pendingKill: null });
            }),
          },
        },
      },
      stopping: {
        // HEAD semantics (Kata d3291b8778): the exit is published first, the slow teardown follows.
        entry: enqueueActions(({ context, enqueue }) => {
          if (context.exitStatus !== null)
            enqueue.emit({ type: 'fact', kind: 'exited', data: exitInfo(context) } as Fact as never);
        }),
        invoke: {
          id: 'coordinator',
          src: 'coordinator',
          input: ({ context }) => ({ compensations: [...context.stack].reverse() }),
          onDone: { target: 'stopped', actions: assign({ leftovers: ({ event }) => event.output.failed, stack: [] }) },
        },
        on: {
          delete: { actions: assign({ deleteRids: ({ context, event }) => [...context.deleteRids, event.rid] }) },
          kill: { actions: emit(({ event }) => reply(event.rid, {})) },
          exit: {},
          hostGone: {},
        },
      },
      stopped: {
        initial: 'settle',
        states: {
          settle: { always: [{ guard: 'hasLeftovers', target: 'waiting' }, { target: 'clean' }] },
          ...cleanupStates(),
          clean: { always: { guard: 'deleteAsked', target: '#' + kind + '.deleted' } },
        },
        on: {
          delete: [
            { guard: 'hasLeftovers', actions: emit(({ event, context }) => fail(event.rid, leftoverError(context))) },
            {
              target: 'deleted',
              actions: assign({ deleteRids: ({ context, event }) => [...context.deleteRids, event.rid] }),
            },
          ],
          kill: [
            { guard: 'isStopSignal', actions: emit(({ event }) => reply(event.rid, {})) },
            { actions: emit(({ event }) => fail(event.rid, precondition('kill', 'stopped'))) },
          ],
          exit: {},
          hostGone: {},
        },
      },
      deleted: {
        type: 'final',
        entry: [
          emit(({ context }) => ({ type: 'fact', kind: 'deleted', data: exitInfo(context) }) as Fact),
          // Several deletes may have queued during teardown; all get the same answer.
          enqueueActions(({ context, enqueue }) => {
            for (const rid of context.deleteRids) enqueue.emit(reply(rid, exitInfo(context)));
          }),
        ],
      },
    },
  });

  function stepState() {
    return {
      invoke: {
        id: 'runStep',
        src: 'runStep' as const,
        input: ({ context }: { context: LifecycleContext }) => ({
          id: context.id,
          step: context.plan!.steps[context.stepIndex]!,
          plan: context.plan!,
          results: context.results,
        }),
        onDone: {
          target: 'advancing',
          actions: [
            (assign as (f: unknown) => never)(
              ({ context, event }: { context: LifecycleContext; event: { output: unknown } }) => {
                const step = context.plan!.steps[context.stepIndex]!;
                const undo = compensationOf(step, event.output);
                return {
                  stepIndex: context.stepIndex + 1,
                  results: { ...context.results, [step.kind]: event.output },
                  stack: undo ? [...context.stack, undo] : context.stack,
                };
              },
            ),
            emit(
              ({ context }: { context: LifecycleContext }) =>
                ({
                  type: 'fact',
                  kind: 'stepDone',
                  data: { step: context.plan!.steps[context.stepIndex - 1]!.kind },
                }) as Fact,
            ),
          ],
        },
        onError: {
          target: 'rollingBack',
          actions: (assign as (f: unknown) => never)(
            ({ context, event }: { context: LifecycleContext; event: { error: unknown } }) => {
              const error = toWire(event.error);
              const undo = compensationOfFailed(context.plan!.steps[context.stepIndex]!, error);
              return { error, stack: undo ? [...context.stack, undo] : context.stack };
            },
          ),
        },
      },
    } as never; // fragments built outside createMachine cannot carry its inferred types
  }

  /** Leftover compensations: wait (growing back-off), run the coordinator on them again, re-check. */
  function cleanupStates() {
    return {
      waiting: {
        invoke: {
          id: 'backoff',
          src: 'backoff' as const,
          input: ({ context }: { context: LifecycleContext }) => ({
            ms: Math.min(60_000, 1000 * 2 ** context.cleanupAttempts),
          }),
          onDone: 'retrying',
          onError: 'retrying',
        },
      },
      retrying: {
        invoke: {
          id: 'coordinator',
          src: 'coordinator' as const,
          input: ({ context }: { context: LifecycleContext }) => ({
            compensations: context.leftovers.map((l) => l.compensation),
          }),
          onDone: {
            target: 'settle',
            actions: (assign as (f: unknown) => never)(
              ({ context, event }: { context: LifecycleContext; event: { output: CoordinatorOutput } }) => ({
                leftovers: event.output.failed,
                cleanupAttempts: context.cleanupAttempts + 1,
              }),
            ),
          },
        },
      },
    } as { waiting: never; retrying: never };
  }
}

const TOP_STATES = [
  'validating',
  'configuring',
  'advancing',
  'mounting',
  'preparingUser',
  'booting',
  'rollingBack',
  'failed',
  'created',
  'starting',
  'running',
  'stopping',
  'stopped',
  'deleted',
] as const;

/** FailedPrecondition naming the current top-level state ("cannot delete task in running state"), as containerd's init_state.go. */
function refuse(verb: string): never {
  return enqueueActions(({ event, enqueue, check }) => {
    const state = TOP_STATES.find((n) => check(stateIn(n))) ?? 'unknown';
    enqueue.emit(fail((event as unknown as { rid: string }).rid, precondition(verb, state)) as never);
  }) as never; // built outside setup(): its inferred types cannot carry the machine's
}

export type LifecycleMachine = ReturnType<typeof lifecycleMachine>;
export type LifecycleActor = ActorRefFrom<LifecycleMachine>;

function pidOf(c: LifecycleContext): number {
  return c.results.boot?.pid ?? c.plan?.hostPid ?? 0;
}

function leftoverError(c: LifecycleContext): WireError {
  const what = c.leftovers.map((l) => `${l.compensation.kind} (${l.error.message})`).join('; ');
  return { code: 'FailedPrecondition', message: `cleanup still pending, retrying: ${what}`, retryable: true };
}

/** The state name a user sees: the top-level state, e.g. "running". */
export function stateName(self: { getSnapshot(): { value: unknown } }): string {
  const v = self.getSnapshot().value;
  return typeof v === 'string' ? v : (Object.keys(v as object)[0] ?? 'unknown');
}
