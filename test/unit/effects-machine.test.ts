/**
 * One machine for every task (machines/effects.ts `effectsMachine` + `bindEffects`): two actors of the
 * same shared machine each run their own effects, including the coordinator's compensations, as actors
 * of a machine provided per task do.
 */
import { createActor } from 'xstate';
import { describe, expect, it } from 'vitest';
import { bindEffects, effectsMachine, sandboxMachine } from '../../src/machines/index.ts';
import { fakeEffects, request, until } from '../helpers/fake-effects.ts';

const start = (id: string, fx: ReturnType<typeof fakeEffects>['fx']) => {
  const actor = createActor(effectsMachine(sandboxMachine), { input: { id, request: request(id), rid: 'r' } });
  bindEffects(actor, fx);
  actor.start();
  return actor;
};

describe('effectsMachine', () => {
  it('is built once per machine', () => {
    expect(effectsMachine(sandboxMachine)).toBe(effectsMachine(sandboxMachine));
  });

  it("runs each actor's own effects, and the coordinator's compensations with them", async () => {
    const a = fakeEffects();
    const b = fakeEffects({ failStep: 'boot' });
    const x = start('sb-a', a.fx);
    const y = start('sb-b', b.fx);
    await until(x, (s) => s === 'created');
    await until(y, (s) => s.includes('failed') || s.includes('rolledBack') || y.getSnapshot().hasTag('removed'));
    expect(a.calls).toEqual(['validate', 'configure', 'mountRootfs', 'bind', 'createUser', 'boot']);
    expect(b.calls.slice(0, 6)).toEqual(['validate', 'configure', 'mountRootfs', 'bind', 'createUser', 'boot']);
    expect(b.compensated.length).toBeGreaterThan(0);
    expect(a.compensated).toEqual([]);
    x.stop();
    y.stop();
  });

  it('an actor whose effects were not bound fails loudly instead of running another' + "'s", async () => {
    const actor = createActor(effectsMachine(sandboxMachine), {
      input: { id: 'sb-c', request: request('sb-c'), rid: 'r' },
    });
    const errors: unknown[] = [];
    actor.subscribe({ error: (e) => errors.push(e) });
    actor.start();
    await until(
      actor,
      () => actor.getSnapshot().context.error !== undefined || actor.getSnapshot().status !== 'active',
    );
    const c = actor.getSnapshot().context as { error?: { message: string } };
    expect(c.error?.message ?? String(errors[0])).toMatch(/effects were not bound/);
    actor.stop();
  });
});
