/**
 * One machine for every task (sharedMachine): each actor runs the effects bound to it (bindEffects), its
 * coordinator's compensations included, never another actor's; an actor started without effects bound fails
 * naming the fix. And the machine is built once per definition.
 */
import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import { bindEffects, sandboxMachine, sharedMachine } from '../../src/machines/index.ts';
import { fakeEffects, request, until } from '../helpers/fake-effects.ts';

const start = (id: string, fx: ReturnType<typeof fakeEffects>['fx']) => {
  const actor = createActor(sharedMachine(sandboxMachine), { input: { id, request: request(id), rid: 'r' } });
  bindEffects(actor, fx);
  actor.start();
  return actor;
};

describe('sharedMachine', () => {
  it('is built once per machine definition', () => {
    expect(sharedMachine(sandboxMachine)).toBe(sharedMachine(sandboxMachine));
  });

  it("runs each actor's own effects, compensations included", async () => {
    const a = fakeEffects();
    const b = fakeEffects({ failStep: 'boot' });
    const ok = start('sa', a.fx);
    const failed = start('sb', b.fx);
    await until(ok, (v) => v === 'created');
    await until(failed, (v) => v.includes('failed'));
    expect(a.calls).toContain('boot');
    expect(a.compensated).toEqual([]);
    expect(b.calls).toContain('boot');
    expect(b.compensated.length).toBeGreaterThan(0); // the coordinator of sb ran sb's compensations
    expect(a.calls.filter((c) => c.startsWith('undo:'))).toEqual([]);
    ok.stop();
    failed.stop();
  });

  it('an actor started without its effects bound fails, naming bindEffects', async () => {
    const actor = createActor(sharedMachine(sandboxMachine), { input: { id: 'sx', request: request('sx'), rid: 'r' } });
    actor.start();
    // the validate effect rejects: the machine takes it as a failed create
    await until(actor, (v) => v.includes('failed'));
    expect(JSON.stringify(actor.getSnapshot().context.error)).toMatch(/bindEffects/);
    actor.stop();
  });
});
