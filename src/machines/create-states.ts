/**
 * The create path's states (Kata's create semantics): validating → configuring → the plan's steps
 * (mounting | preparingUser | booting)* → created; any failure → rollingBack → failed. Every
 * completed step pushes its compensation; a step whose outcome is unknown pushes the undo built from
 * its arguments (compensation.ts).
 */
import { assign, emit } from 'xstate';
import { toWireError } from '../errors.ts';
import { compensationOf, compensationOfFailed } from './compensation.ts';
import { cleanupStates, fact, fail, leftoverError, lifecycleSetup as L, pidOf, reply } from './lifecycle-setup.ts';

/** One step of the plan, through the `runStep` effect; the phase is the state's name. */
const stepState = () =>
  L.createStateConfig({
    invoke: {
      id: 'runStep',
      src: 'runStep',
      input: ({ context }) => ({
        id: context.id,
        step: context.plan!.steps[context.stepIndex]!,
        plan: context.plan!,
        results: context.results,
      }),
      onDone: {
        target: 'advancing',
        actions: [
          emit(({ context }) => fact('stepDone', { step: context.plan!.steps[context.stepIndex]!.kind })),
          assign(({ context, event }) => {
            const step = context.plan!.steps[context.stepIndex]!;
            const undo = compensationOf(step, event.output);
            return {
              stepIndex: context.stepIndex + 1,
              results: { ...context.results, [step.kind]: event.output },
              stack: undo ? [...context.stack, undo] : context.stack,
            };
          }),
        ],
      },
      onError: {
        target: 'rollingBack',
        actions: assign(({ context, event }) => {
          const error = toWireError(event.error);
          const undo = compensationOfFailed(context.plan!.steps[context.stepIndex]!, error);
          return { error, stack: undo ? [...context.stack, undo] : context.stack };
        }),
      },
    },
  });

export const createStates = {
  validating: L.createStateConfig({
    invoke: {
      id: 'validate',
      src: 'validate',
      input: ({ context }) => context.request,
      onDone: { target: 'configuring', actions: assign({ results: ({ event }) => ({ validated: event.output }) }) },
      onError: { target: 'rollingBack', actions: assign({ error: ({ event }) => toWireError(event.error) }) },
    },
  }),
  configuring: L.createStateConfig({
    invoke: {
      id: 'configure',
      src: 'configure',
      input: ({ context }) => ({ request: context.request, validated: context.results.validated }),
      onDone: { target: 'advancing', actions: assign({ plan: ({ event }) => event.output }) },
      onError: { target: 'rollingBack', actions: assign({ error: ({ event }) => toWireError(event.error) }) },
    },
  }),
  advancing: L.createStateConfig({
    always: [
      { guard: { type: 'nextIs', params: 'mounting' }, target: 'mounting' },
      { guard: { type: 'nextIs', params: 'preparingUser' }, target: 'preparingUser' },
      { guard: { type: 'nextIs', params: 'booting' }, target: 'booting' },
      {
        target: 'created',
        actions: [
          assign({ pid: ({ context }) => pidOf(context) }),
          emit(({ context }) =>
            fact('created', {
              pid: context.pid,
              bundle: context.request.bundle,
              sandboxId: context.plan?.sandboxId,
              containerType: context.plan?.type,
            }),
          ),
          emit(({ context }) => reply(context.createRid!, { pid: context.pid })),
          assign({ createRid: null }),
        ],
      },
    ],
  }),
  mounting: stepState(),
  preparingUser: stepState(),
  booting: stepState(),
  rollingBack: L.createStateConfig({
    invoke: {
      id: 'coordinator',
      src: 'coordinator',
      input: ({ context }) => ({ compensations: [...context.stack].reverse() }),
      onDone: {
        target: 'failed',
        actions: [
          assign({ leftovers: ({ event }) => event.output.failed, stack: [] }),
          emit(({ context, event }) =>
            fact('rolledBack', {
              error: context.error,
              undone: event.output.done.map((c) => c.undoes),
              leftovers: event.output.failed,
            }),
          ),
          emit(({ context }) => fail(context.createRid!, context.error!)),
          assign({ createRid: null }),
        ],
      },
    },
  }),
  failed: L.createStateConfig({
    tags: ['stopped'],
    initial: 'settle',
    states: {
      settle: { always: [{ guard: 'hasLeftovers', target: 'waiting' }, { target: 'clean' }] },
      ...cleanupStates,
      clean: { tags: ['removed'] },
    },
    on: {
      delete: [
        { guard: 'hasLeftovers', actions: emit(({ event, context }) => fail(event.rid, leftoverError(context))) },
        { target: 'deleted', actions: assign({ deleteRids: ({ event }) => [event.rid] }) },
      ],
      kill: { actions: emit(({ event }) => reply(event.rid, {})) },
    },
  }),
};
