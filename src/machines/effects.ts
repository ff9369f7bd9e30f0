/**
 * The effects a lifecycle machine names, as plain async functions, and the one place that binds them
 * with `.provide()`. The agent passes real implementations (NATS requests to workers, with the
 * write-ahead journal around each); tests pass fakes. Every effect receives an AbortSignal that fires
 * when the machine leaves the state that invoked it.
 */
import { fromPromise } from 'xstate';
import type { Compensation, CreatePlan, CreateTaskRequest, RunAct, Step } from '../domain/task.ts';
import { coordinatorMachine } from './coordinator.machine.ts';
import type { LifecycleMachine, StepOutputs } from './lifecycle.ts';

export interface Effects {
  validate(request: CreateTaskRequest, signal: AbortSignal): Promise<unknown>;
  configure(input: { request: CreateTaskRequest; validated: unknown }, signal: AbortSignal): Promise<CreatePlan>;
  runStep(
    input: { id: string; step: Step; plan: CreatePlan; results: StepOutputs },
    signal: AbortSignal,
  ): Promise<unknown>;
  startProcess(input: { id: string; plan: CreatePlan }, signal: AbortSignal): Promise<unknown>;
  signal(input: { id: string; plan: CreatePlan; signal: number; all: boolean }, signal: AbortSignal): Promise<unknown>;
  /** One act of a running task (run-acts.ts): a worker op; `guestPid` for an exec's start. */
  act(input: { id: string; plan: CreatePlan; act: RunAct }, signal: AbortSignal): Promise<{ guestPid?: number }>;
  compensate(c: Compensation, signal: AbortSignal): Promise<unknown>;
  /** A timer, as an effect: its firing is an input recorded like any other. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
}

export function provideEffects(machine: LifecycleMachine, fx: Effects): LifecycleMachine {
  const backoff = fromPromise<unknown, { ms: number }>(({ input, signal }) => fx.sleep(input.ms, signal));
  return machine.provide({
    actors: {
      validate: fromPromise(({ input, signal }) => fx.validate(input, signal)),
      configure: fromPromise(({ input, signal }) => fx.configure(input, signal)),
      runStep: fromPromise(({ input, signal }) => fx.runStep(input, signal)),
      startProcess: fromPromise(({ input, signal }) => fx.startProcess(input, signal)),
      signal: fromPromise(({ input, signal }) => fx.signal(input, signal)),
      act: fromPromise(({ input, signal }) => fx.act(input, signal)),
      backoff,
      coordinator: coordinatorMachine.provide({
        actors: { compensate: fromPromise(({ input, signal }) => fx.compensate(input, signal)), backoff },
      }),
    },
  });
}

/**
 * The same binding without a machine per task: `effectsMachine` provides, once per machine, effects that
 * look up the ones bound to their actor system, and `bindEffects` binds a task's effects to its actor
 * before it starts. `.provide()` per task (above) built a machine and a coordinator for every create
 * (issue 13: about 4% of the agent's CPU in a burst of creates); the actors behave the same.
 */
const bound = new WeakMap<object, Effects>();
const shared = new WeakMap<LifecycleMachine, LifecycleMachine>();

function fxOf(system: object): Effects {
  const fx = bound.get(system);
  if (!fx) throw new Error('BUG: an effect ran in an actor whose effects were not bound (bindEffects)');
  return fx;
}

export function effectsMachine(machine: LifecycleMachine): LifecycleMachine {
  let m = shared.get(machine);
  if (m) return m;
  const backoff = fromPromise<unknown, { ms: number }>(({ input, signal, system }) =>
    fxOf(system).sleep(input.ms, signal),
  );
  m = machine.provide({
    actors: {
      validate: fromPromise(({ input, signal, system }) => fxOf(system).validate(input, signal)),
      configure: fromPromise(({ input, signal, system }) => fxOf(system).configure(input, signal)),
      runStep: fromPromise(({ input, signal, system }) => fxOf(system).runStep(input, signal)),
      startProcess: fromPromise(({ input, signal, system }) => fxOf(system).startProcess(input, signal)),
      signal: fromPromise(({ input, signal, system }) => fxOf(system).signal(input, signal)),
      act: fromPromise(({ input, signal, system }) => fxOf(system).act(input, signal)),
      backoff,
      coordinator: coordinatorMachine.provide({
        actors: {
          compensate: fromPromise(({ input, signal, system }) => fxOf(system).compensate(input, signal)),
          backoff,
        },
      }),
    },
  });
  shared.set(machine, m);
  return m;
}

/** Binds a task's effects to its actor (made from an `effectsMachine`), before it starts. */
export function bindEffects(actor: { system: object }, fx: Effects): void {
  bound.set(actor.system, fx);
}
