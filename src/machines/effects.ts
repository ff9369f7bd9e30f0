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
