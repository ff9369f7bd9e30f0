/**
 * The task lifecycle both sandboxes and pod containers follow (containerd's task states, Kata's
 * create semantics), as one pure statechart. `sandbox.machine.ts` and `container.machine.ts`
 * instantiate it; they differ in the steps their plan holds and in which event means "the VM is gone".
 *
 * validating → configuring → (mounting | preparingUser | booting)* → created → starting → running
 *   → stopping → stopped → deleted; any create step failing → rollingBack → failed.
 * (create-states.ts holds the create path, run-states.ts the rest; lifecycle-setup.ts what they share.)
 *
 * Inputs carry their own timestamps (`at`), so the machine never reads a clock: replaying the
 * recorded inputs rebuilds the same states.
 */
import { stateIn, type ActorRefFrom } from 'xstate';
import { createStates } from './create-states.ts';
import { runStates } from './run-states.ts';
import { anyStateActs } from './run-acts.ts';
import { fail, lifecycleSetup as L, precondition, type LifecycleTag } from './lifecycle-setup.ts';

export type {
  KillRequest,
  LifecycleContext,
  LifecycleEvent,
  LifecycleInput,
  LifecycleTag,
  StepOutputs,
} from './lifecycle-setup.ts';

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

/**
 * FailedPrecondition naming the current top-level state ("cannot delete task in running state"), as
 * containerd's init_state.go.
 */
const refuse = (verb: 'start' | 'kill' | 'delete' | 'exec' | 'pause' | 'resume' | 'resize' | 'closeIO' | 'update') =>
  L.enqueueActions(({ event, enqueue, check }) => {
    if (!('rid' in event)) return;
    const state = TOP_STATES.find((n) => check(stateIn(n))) ?? 'unknown';
    enqueue.emit(fail(event.rid, precondition(verb, state)));
  });

/**
 * A persisted snapshot of an earlier version in today's context shape (snapshots outlive an upgrade):
 * `pendingKill` (its rid in `pendingRid`) and `queuedKills` became `kills`; `pendingAct` and `queuedActs`
 * became `acts`. Anything else is returned as it is.
 */
export function upgradeSnapshot(snapshot: unknown): unknown {
  const s = snapshot as { context?: Record<string, unknown> } | null;
  const c = s?.context;
  if (!c || !['pendingKill', 'queuedKills', 'pendingAct', 'queuedActs'].some((k) => k in c)) return snapshot;
  type Old = { pendingKill?: object | null; queuedKills?: unknown[]; pendingAct?: unknown; queuedActs?: unknown[] };
  const { pendingKill, queuedKills, pendingAct, queuedActs, ...context } = c as Old & Record<string, unknown>;
  // The kill in flight (its rid was the start's field) heads the queue.
  const inFlight =
    pendingKill && typeof context.pendingRid === 'string' ? [{ rid: context.pendingRid, ...pendingKill }] : [];
  if (inFlight.length) context.pendingRid = null;
  const kills = [...inFlight, ...(queuedKills ?? [])];
  const acts = [...(pendingAct ? [pendingAct] : []), ...(queuedActs ?? [])];
  if (kills.length) context.kills = kills;
  if (acts.length) context.acts = acts;
  return { ...s, context };
}

export function lifecycleMachine(kind: 'sandbox' | 'container') {
  return L.createMachine({
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
      deleteRids: [],
      // The optional keys (LifecycleContext) stay absent until used: xstate copies the context with
      // Object.assign on every assign, and V8 turns a copy of more than 19 keys into a slow dictionary.
    }),
    initial: 'validating',
    // Commands not accepted by the current state end here: FailedPrecondition naming the state.
    on: {
      start: { actions: refuse('start') },
      kill: { actions: refuse('kill') },
      delete: { actions: refuse('delete') },
      exec: { actions: refuse('exec') },
      execStart: { actions: refuse('start') },
      pause: { actions: refuse('pause') },
      resume: { actions: refuse('resume') },
      resize: { actions: refuse('resize') },
      closeIO: { actions: refuse('closeIO') },
      update: { actions: refuse('update') },
      ...anyStateActs,
    },
    states: { ...createStates, ...runStates },
  });
}

export type LifecycleMachine = ReturnType<typeof lifecycleMachine>;
export type LifecycleActor = ActorRefFrom<LifecycleMachine>;

/** The state name a user sees: the top-level state, e.g. "running". */
export function stateName(self: { getSnapshot(): { value: unknown } }): string {
  const v = self.getSnapshot().value;
  return typeof v === 'string' ? v : (Object.keys(v as object)[0] ?? 'unknown');
}

/** Whether the actor's current state carries `tag` (lifecycle-setup.ts lists what each tag means). */
export const hasTag = (self: LifecycleActor, tag: LifecycleTag): boolean => self.getSnapshot().hasTag(tag);
