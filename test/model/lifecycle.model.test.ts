/**
 * Model-based: xstate/graph walks the sandbox statechart (pure transitions, effect outcomes as
 * events) to every reachable state; each path is then replayed against a real actor whose fake workers
 * are scripted by that path (which effect fails, when). The real actor must pass through the path's
 * states and end where the model says, and rollback/teardown must undo exactly what was done.
 */
import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import { getShortestPaths } from 'xstate/graph';
import { err } from '../../src/errors.ts';
import type { Compensation } from '../../src/domain/task.ts';
import {
  containerMachine,
  provideEffects,
  sandboxMachine,
  type Effects,
  type LifecycleMachine,
} from '../../src/machines/index.ts';
import { plan, request, until } from '../helpers/fake-effects.ts';
import { deferred, waitFor } from '../helpers/wait.ts';

const P = plan();
const stepOut = (kind: string) =>
  kind === 'boot' ? { pid: 7 } : kind === 'createUser' ? { user: 'corral-1', uid: 1 } : { createdDir: true };
const done = (id: string, output: unknown = {}) => ({ type: `xstate.done.actor.${id}`, output }) as never;
const fail = (id: string) =>
  ({
    type: `xstate.error.actor.${id}`,
    error: { code: 'Internal', message: `${id} failed`, retryable: false },
  }) as never;

const EVENTS = [
  done('validate'),
  fail('validate'),
  done('configure', P),
  fail('configure'),
  // runStep outputs depend on the step; the model uses a neutral output that satisfies all of them.
  done('runStep', { pid: 7, user: 'corral-1', uid: 1, createdDir: true }),
  fail('runStep'),
  done('coordinator', { done: [], failed: [] }),
  done('startProcess'),
  fail('startProcess'),
  done('signal'),
  { type: 'start', rid: 's', at: 0 },
  { type: 'kill', rid: 'k', signal: 9, all: true, at: 0 },
  { type: 'exit', exitStatus: 3, exitedAt: 0 },
  { type: 'delete', rid: 'd', at: 0 },
  { type: 'hostGone', at: 0 },
] as never[];

const valueOf = (v: unknown) => JSON.stringify(v);

describe.each([
  ['sandbox', sandboxMachine],
  ['container', containerMachine],
] as [string, LifecycleMachine][])('%s machine, every shortest path against fake workers', (_name, machine) => {
  const paths = getShortestPaths(machine, {
    events: EVENTS,
    input: { id: 'sb1', request: request(), rid: 'c' },
    serializeState: (s) =>
      valueOf(s.value) +
      JSON.stringify({
        i: (s.context as { stepIndex: number }).stepIndex,
        x: (s.context as { exitStatus: unknown }).exitStatus,
        st: (s.context as { started: boolean }).started,
        k: (s.context as { stack: unknown[] }).stack.length,
      }),
  });

  it('reaches every state of the lifecycle', () => {
    const reached = new Set(
      paths.map((p) => {
        const v = p.state.value;
        return typeof v === 'string' ? v : Object.keys(v)[0];
      }),
    );
    for (const s of [
      'validating',
      'configuring',
      'mounting',
      'preparingUser',
      'booting',
      'created',
      'starting',
      'running',
      'stopping',
      'stopped',
      'deleted',
      'rollingBack',
      'failed',
    ])
      expect(reached).toContain(s);
    expect(paths.length).toBeGreaterThan(20);
  });

  it.each(paths.map((p, i) => [i, p.steps.map((s) => s.event.type.replace('xstate.', '')).join(' → ')] as const))(
    'path %i: %s',
    async (i) => {
      const path = paths[i]!;
      // Effects the path decides: each call waits until the path says how it ends.
      const calls: { id: string; kind?: string; settle: (ok: boolean) => void }[] = [];
      const undone: Compensation['kind'][] = [];
      const performed: string[] = [];
      let gate = deferred();
      // A step that fails with Internal may have happened: it counts as performed (and must be undone).
      const held = (id: string, kind?: string, out: () => unknown = () => ({})) =>
        new Promise<unknown>((resolve, reject) => {
          calls.push({
            id,
            kind,
            settle: (ok) => {
              if (ok) resolve(out());
              else {
                if (kind) performed.push(kind);
                reject(err.internal(`${id} failed`));
              }
            },
          });
        });
      const fx: Effects = {
        validate: () => held('validate'),
        configure: () => held('configure', undefined, () => P) as Promise<typeof P>,
        runStep: ({ step }) =>
          held('runStep', step.kind, () => {
            performed.push(step.kind);
            return stepOut(step.kind);
          }),
        startProcess: () => held('startProcess'),
        signal: () => held('signal'),
        act: () => held('act') as Promise<{ guestPid?: number }>,
        // The coordinator as a whole is one model event: its compensations wait for that event.
        compensate: async (c) => {
          await gate.promise;
          undone.push(c.kind);
          return {};
        },
        sleep: async () => {},
      };
      const actor = createActor(provideEffects(machine, fx), { input: { id: 'sb1', request: request(), rid: 'c' } });
      actor.start();
      const settled = (want: string) =>
        until(actor, () => valueOf(actor.getSnapshot().value) === want, 2000, `the state ${want}`);
      for (const step of path.steps) {
        const e = step.event as { type: string };
        const m = /^xstate\.(done|error)\.actor\.(\w+)$/.exec(e.type);
        if (m && m[2] !== 'coordinator') {
          const k = await waitFor(() => calls.findIndex((c) => c.id === m[2]), {
            until: (k) => k >= 0,
            timeoutMs: 2000,
            intervalMs: 1,
            what: `a call of the effect ${m[2]}`,
          });
          calls.splice(k, 1)[0]!.settle(m[1] === 'done');
        } else if (!m) actor.send(e as never);
        else gate.resolve();
        // A coordinator with nothing to undo ends at once: there is no time to observe it running.
        const instant =
          ['"rollingBack"', '"stopping"'].includes(valueOf(step.state.value)) &&
          (step.state.context as { stack: unknown[] }).stack.length === 0;
        if (!instant) await settled(valueOf(step.state.value));
        if (m?.[2] === 'coordinator') gate = deferred();
      }
      // Whatever was done and is not on the stack any more was undone, exactly once.
      const ctx = actor.getSnapshot().context;
      expect(undone.length + ctx.stack.length).toBe(performed.length);
      actor.stop();
    },
  );
});
