/**
 * The effects a lifecycle machine names, as plain async functions, and the one place that binds them
 * with `.provide()`. The agent passes real implementations (NATS requests to workers, with the
 * write-ahead journal around each); tests pass fakes. Every effect receives an AbortSignal that fires
 * when the machine leaves the state that invoked it. The agent and recovery use one machine per definition
 * (`sharedMachine`), each actor bound to its own effects (`bindEffects`).
 */
import { fromPromise, type PromiseActorLogic } from 'xstate';
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

/** Effects as each actor finds them: one object for every actor, or the one bound to its actor system. */
type EffectsOf = (system: object) => Effects; // an actor system, as the key of its actors' effects

/** What a lifecycle machine and its coordinator invoke, by `src`: an effect each (`backoff` is `sleep`). */
export type EffectSrc = Exclude<keyof Effects, 'sleep'> | 'backoff';

/**
 * The log's name of an effect: what its outcome record holds in `effect`. The agent journals each outcome
 * under it (agent/effects.ts) and offline replay asks the gate by it (replay/gated-logic.ts).
 */
export function effectName(src: EffectSrc, input: unknown): string {
  const i = input as { step?: { kind: string }; act?: { op: string }; kind?: string };
  if (src === 'runStep') return i.step!.kind;
  if (src === 'act') return `act:${i.act!.op}`;
  if (src === 'compensate') return `undo:${i.kind}`;
  if (src === 'backoff') return 'timer';
  return src;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- each src has its own input; provide() checks them
type EffectLogic = PromiseActorLogic<any, any>;

/** `machine` with `logicOf(src)` as the logic of each effect it invokes, its coordinator's included. */
export function withEffectLogic(machine: LifecycleMachine, logicOf: (src: EffectSrc) => EffectLogic): LifecycleMachine {
  const backoff = logicOf('backoff');
  return machine.provide({
    actors: {
      validate: logicOf('validate'),
      configure: logicOf('configure'),
      runStep: logicOf('runStep'),
      startProcess: logicOf('startProcess'),
      signal: logicOf('signal'),
      act: logicOf('act'),
      backoff,
      coordinator: coordinatorMachine.provide({ actors: { compensate: logicOf('compensate'), backoff } }),
    },
  });
}

function bindActors(machine: LifecycleMachine, fx: EffectsOf): LifecycleMachine {
  type Run = (input: unknown, signal: AbortSignal) => Promise<unknown>;
  return withEffectLogic(machine, (src) =>
    fromPromise<unknown, unknown>(({ input, signal, system }) =>
      src === 'backoff'
        ? fx(system).sleep((input as { ms: number }).ms, signal)
        : (fx(system)[src] as Run)(input, signal),
    ),
  );
}

/** A machine whose every actor runs `fx` (tests, one-off actors). */
export function provideEffects(machine: LifecycleMachine, fx: Effects): LifecycleMachine {
  return bindActors(machine, () => fx);
}

/** The effects of each actor, by its actor system (shared by the root actor and every actor it invokes). */
const bound = new WeakMap<object, Effects>();
const shared = new WeakMap<LifecycleMachine, LifecycleMachine>();

/**
 * `machine` with effects each actor takes from {@link bindEffects}: built once per machine definition, where
 * `provideEffects` builds a machine per task (a recovery of 1,000 tasks built 2,000 machines and their
 * transitions again, one per actor and one per coordinator).
 */
export function sharedMachine(machine: LifecycleMachine): LifecycleMachine {
  let m = shared.get(machine);
  if (!m)
    shared.set(
      machine,
      (m = bindActors(machine, (system) => {
        const fx = bound.get(system);
        if (!fx) throw new Error('effects not bound to this actor: bindEffects(actor, fx) before actor.start()');
        return fx;
      })),
    );
  return m;
}

/** Binds an actor of a {@link sharedMachine} to its effects; before it starts (its first effect is invoked then). */
export function bindEffects(actor: { system: object }, fx: Effects): void {
  bound.set(actor.system, fx);
}
