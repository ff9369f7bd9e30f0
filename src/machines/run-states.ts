/**
 * A created task's states (containerd's task lifecycle): created → starting → running → stopping →
 * stopped → deleted. Teardown runs the coordinator over the compensation stack, newest first;
 * compensations that still fail are kept (`leftovers`) and retried until they succeed, never dropped.
 *
 * Kills while one is being signalled queue up: each is signalled and answered in turn (exactly one
 * reply per request); an exit or a VM death answers every kill still waiting.
 */
import { assign, emit, enqueueActions } from 'xstate';
import { err, toWireError } from '../errors.ts';
import {
  cleanupStates,
  exitInfo,
  fact,
  fail,
  leftoverError,
  lifecycleSetup as L,
  reply,
  type LifecycleContext,
} from './lifecycle-setup.ts';
import { abandonedActs, actingState, runningActs } from './run-acts.ts';

/**
 * The kill being signalled and those queued behind it: all get an empty reply (the process is gone);
 * the acts in flight or queued are refused.
 */
const answerKills = (c: LifecycleContext) => [...(c.kills ?? []).map((k) => reply(k.rid, {})), ...abandonedActs(c)];
/** The kill and act queues emptied; a key that is absent stays absent (lifecycle.ts: context size). */
const queuesCleared = (c: LifecycleContext): Partial<LifecycleContext> => {
  const out: Partial<LifecycleContext> = {};
  if (c.kills !== undefined) out.kills = [];
  if (c.acts !== undefined) out.acts = [];
  return out;
};
const killDone = ({ context }: { context: LifecycleContext }) => ({ kills: context.kills!.slice(1) });
const queuedKill = L.assign({
  kills: ({ context, event }) =>
    event.type !== 'kill'
      ? (context.kills ?? [])
      : [...(context.kills ?? []), { rid: event.rid, signal: event.signal, all: event.all }],
});

export const runStates = {
  created: L.createStateConfig({
    tags: ['created', 'quiet'],
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
  }),
  starting: L.createStateConfig({
    tags: ['created'],
    invoke: {
      id: 'startProcess',
      src: 'startProcess',
      input: ({ context }) => ({ id: context.id, plan: context.plan! }),
      onDone: {
        target: 'running',
        actions: [
          emit(({ context }) => reply(context.pendingRid!, { pid: context.pid })),
          emit(({ context }) => fact('started', { pid: context.pid })),
          assign({ pendingRid: null, started: true }),
        ],
      },
      onError: {
        // Kata: a failed start makes Wait return 255. Corral also tears the task down so nothing lingers.
        target: 'stopping',
        actions: [
          emit(({ context, event }) => fail(context.pendingRid!, toWireError(event.error))),
          assign({ pendingRid: null, exitStatus: 255, exitedAt: 0 }),
        ],
      },
    },
    on: {
      exit: {
        actions: assign({ exitStatus: ({ event }) => event.exitStatus, exitedAt: ({ event }) => event.exitedAt }),
      },
    },
  }),
  running: L.createStateConfig({
    tags: ['running'],
    initial: 'idle',
    states: {
      idle: {
        tags: ['quiet'],
        always: [
          { guard: 'killQueued', target: 'signalling' }, // the kill at the head of `kills` is signalled
          { guard: 'actQueued', target: 'acting' }, // the act at the head of `acts` runs
        ],
      },
      acting: { ...actingState, on: { kill: { actions: queuedKill } } },
      signalling: {
        invoke: {
          id: 'signal',
          src: 'signal',
          input: ({ context }) => {
            const { signal, all } = context.kills![0]!;
            return { id: context.id, plan: context.plan!, signal, all };
          },
          onDone: {
            target: 'idle',
            actions: [emit(({ context }) => reply(context.kills![0]!.rid, {})), assign(killDone)],
          },
          onError: {
            target: 'idle',
            actions: [
              emit(({ context, event }) => fail(context.kills![0]!.rid, toWireError(event.error))),
              assign(killDone),
            ],
          },
        },
        on: {
          // Not a second signalling (that would lose the first request's reply): it waits its turn.
          kill: { actions: queuedKill },
        },
      },
    },
    always: { guard: ({ context }) => context.exitStatus !== null, target: 'stopping' },
    on: {
      ...runningActs,
      kill: { target: '.signalling', actions: queuedKill },
      // The process may exit before the signal's own reply is in: the kills waiting for it are answered too.
      exit: {
        target: 'stopping',
        actions: enqueueActions(({ context, event, enqueue }) => {
          for (const r of answerKills(context)) enqueue.emit(r);
          enqueue.assign({
            exitStatus: event.exitStatus,
            exitedAt: event.exitedAt,
            pendingRid: null,
            ...queuesCleared(context),
          });
        }),
      },
      hostGone: {
        target: 'stopping',
        actions: enqueueActions(({ context, event, enqueue }) => {
          for (const r of answerKills(context)) enqueue.emit(r);
          enqueue.assign({
            exitStatus: 255,
            exitedAt: event.at,
            pendingRid: null,
            ...queuesCleared(context),
          });
        }),
      },
    },
  }),
  stopping: L.createStateConfig({
    tags: ['stopped'],
    // HEAD semantics (Kata d3291b8778): the exit is published first, the slow teardown follows.
    entry: enqueueActions(({ context, enqueue }) => {
      if (context.exitStatus !== null) enqueue.emit(fact('exited', exitInfo(context)));
    }),
    invoke: {
      id: 'coordinator',
      src: 'coordinator',
      input: ({ context }) => ({ compensations: [...context.stack].reverse() }),
      onDone: { target: 'stopped', actions: assign({ leftovers: ({ event }) => event.output.failed, stack: [] }) },
    },
    on: {
      delete: { actions: assign({ deleteRids: ({ context, event }) => [...context.deleteRids, event.rid] }) },
      // Kata §9.4: SIGKILL/SIGTERM of a stopped task succeed; another signal has no process to go to.
      kill: [
        { guard: 'isStopSignal', actions: emit(({ event }) => reply(event.rid, {})) },
        { actions: emit(({ event }) => fail(event.rid, err.notFound('process already finished').toWire())) },
      ],
      exit: {},
      hostGone: {},
    },
  }),
  stopped: L.createStateConfig({
    tags: ['stopped'],
    initial: 'settle',
    states: {
      settle: { always: [{ guard: 'hasLeftovers', target: 'waiting' }, { target: 'clean' }] },
      ...cleanupStates,
      clean: { tags: ['quiet'], always: { guard: 'deleteAsked', target: '#deleted' } },
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
        { actions: emit(({ event }) => fail(event.rid, err.notFound('process already finished').toWire())) },
      ],
      exit: {},
      hostGone: {},
    },
  }),
  deleted: L.createStateConfig({
    id: 'deleted',
    type: 'final',
    tags: ['stopped'],
    entry: [
      emit(({ context }) => fact('deleted', exitInfo(context))),
      // Several deletes may have queued during teardown; all get the same answer.
      enqueueActions(({ context, enqueue }) => {
        for (const rid of context.deleteRids) enqueue.emit(reply(rid, exitInfo(context)));
      }),
    ],
  }),
};
