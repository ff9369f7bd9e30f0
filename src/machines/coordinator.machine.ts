/**
 * The coordinator: runs a list of compensations in order (the caller passes the stack already
 * reversed), each through the `compensate` effect with its own deadline. A failed compensation is
 * retried with exponential back-off (`backoff` effect, so the timer firing is an input like any other)
 * up to `maxAttempts`; one that still fails is recorded in `failed`, never dropped: the parent keeps it
 * and runs the coordinator again later. Output: `{ done, failed }`.
 */
import { assign, setup } from 'xstate';
import { notBound } from './not-bound.ts';
import { toWireError, type WireError } from '../errors.ts';
import type { Compensation } from '../domain/ops.ts';

export interface CoordinatorInput {
  compensations: Compensation[];
  maxAttempts?: number;
  baseBackoffMs?: number;
}
export interface CoordinatorOutput {
  done: Compensation[];
  failed: { compensation: Compensation; error: WireError }[];
}

export const coordinatorMachine = setup({
  types: {
    input: {} as CoordinatorInput,
    output: {} as CoordinatorOutput,
    context: {} as {
      pending: Compensation[];
      done: Compensation[];
      failed: CoordinatorOutput['failed'];
      attempts: number;
      maxAttempts: number;
      baseBackoffMs: number;
      lastError: WireError | null;
    },
  },
  actors: {
    compensate: notBound<unknown, Compensation>('compensate'),
    backoff: notBound<unknown, { ms: number }>('backoff'),
  },
  guards: {
    nothingLeft: ({ context }) => context.pending.length === 0,
    mayRetry: ({ context }) => context.attempts < context.maxAttempts,
  },
}).createMachine({
  id: 'coordinator',
  context: ({ input }) => ({
    pending: [...input.compensations],
    done: [],
    failed: [],
    attempts: 0,
    maxAttempts: input.maxAttempts ?? 4,
    baseBackoffMs: input.baseBackoffMs ?? 200,
    lastError: null,
  }),
  initial: 'next',
  states: {
    next: { always: [{ guard: 'nothingLeft', target: 'done' }, { target: 'compensating' }] },
    compensating: {
      invoke: {
        src: 'compensate',
        input: ({ context }) => context.pending[0]!,
        onDone: {
          target: 'next',
          actions: assign(({ context }) => ({
            done: [...context.done, context.pending[0]!],
            pending: context.pending.slice(1),
            attempts: 0,
            lastError: null,
          })),
        },
        onError: {
          target: 'retryOrRecord',
          actions: assign(({ context, event }) => ({
            attempts: context.attempts + 1,
            lastError: toWireError(event.error),
          })),
        },
      },
    },
    retryOrRecord: {
      always: [
        { guard: 'mayRetry', target: 'backingOff' },
        {
          target: 'next',
          actions: assign(({ context }) => ({
            failed: [...context.failed, { compensation: context.pending[0]!, error: context.lastError! }],
            pending: context.pending.slice(1),
            attempts: 0,
            lastError: null,
          })),
        },
      ],
    },
    backingOff: {
      invoke: {
        src: 'backoff',
        input: ({ context }) => ({ ms: context.baseBackoffMs * 2 ** (context.attempts - 1) }),
        onDone: 'compensating',
        onError: 'compensating',
      },
    },
    done: { type: 'final' },
  },
  output: ({ context }) => ({ done: context.done, failed: context.failed }),
});
