/**
 * Offline replay's effects, as actor logic of their own. Each effect asks the gate for its recorded
 * outcome when its state invokes it, and the gate settles it inside `deliver`, synchronously: the
 * outcome, the machine's transition and the next effect's ask all run before `deliver` returns. No
 * promise, no AbortController, no microtask per effect (issue 13: replay at read speed).
 *
 * Written here because xstate's promise logic always runs a promise: this is xstate's documented custom
 * actor logic (transition, start, getInitialSnapshot) with the promise logic's snapshot shape (status,
 * output, error, input), so a machine, its persisted snapshots and its inspection see no difference.
 * Recovery does not use it: its effects go live once the log ends, and run as promises (agent/effects.ts).
 */
import type { AnyActorRef, PromiseActorLogic, PromiseSnapshot } from 'xstate';
import { fromWire } from '../errors.ts';
import { effectName, withEffectLogic, type EffectSrc, type LifecycleMachine } from '../machines/index.ts';
import type { EffectGate, Outcome } from './gate.ts';

/** Each actor system's task and gate (the root actor and every actor it invokes share the system). */
const bound = new WeakMap<object, { taskId: string; gate: EffectGate }>();

/** Binds an actor of a {@link gatedMachine} to its task's gate, before it starts. */
export function bindGate(actor: { system: object }, taskId: string, gate: EffectGate): void {
  bound.set(actor.system, { taskId, gate });
}

const DONE = 'corral.replay.done';
const FAILED = 'corral.replay.failed';
const STOP = 'xstate.stop'; // what an actor's logic is sent when its state is left (xstate's XSTATE_STOP)

function gatedLogic(src: EffectSrc): PromiseActorLogic<unknown, unknown> {
  /** Actors whose invoking state was left: a later outcome is handed over but no longer taken. */
  const left = new WeakSet<AnyActorRef>();
  return {
    transition: (s, event, { self }) => {
      if (s.status !== 'active') return s;
      if (event.type === DONE) return { ...s, status: 'done', output: event.output, input: undefined };
      if (event.type === FAILED) return { ...s, status: 'error', error: event.error, input: undefined };
      if (event.type !== STOP) return s;
      left.add(self);
      return { ...s, status: 'stopped', input: undefined };
    },
    start: (s, { self, system }) => {
      if (s.status !== 'active') return;
      const b = bound.get(system);
      if (!b) throw new Error('replay: bindGate(actor, taskId, gate) before actor.start()');
      const settle = (o: Outcome | 'live') => {
        // Past the end of the log nothing runs for real: the effect stays in flight, by design.
        if (o === 'live' || left.has(self)) return;
        // The error as a live effect throws it (agent/effects.ts): the machine keeps toWireError of it.
        self.send(o.ok ? { type: DONE, output: o.output } : { type: FAILED, error: fromWire(o.error) });
      };
      b.gate.ask(b.taskId, effectName(src, s.input), settle, () => left.has(self));
    },
    getInitialSnapshot: (_, input): PromiseSnapshot<unknown, unknown> => ({
      status: 'active',
      output: undefined,
      error: undefined,
      input,
    }),
    getPersistedSnapshot: (s) => s,
    restoreSnapshot: (s) => s as PromiseSnapshot<unknown, unknown>,
  };
}

const gated = new WeakMap<LifecycleMachine, LifecycleMachine>();

/** `machine` with every effect gated (built once per definition; each actor bound with {@link bindGate}). */
export function gatedMachine(machine: LifecycleMachine): LifecycleMachine {
  let m = gated.get(machine);
  if (!m) gated.set(machine, (m = withEffectLogic(machine, gatedLogic)));
  return m;
}
