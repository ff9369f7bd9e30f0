/**
 * Offline replay's gated effects (src/replay/gated-logic.ts): an effect asks the gate when its state
 * invokes it, and a recorded outcome handed over is taken before `deliver` returns (no promise, no
 * microtask); past the end of the log (`goLive`) the effect stays in flight.
 */
import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import { effectName, sandboxMachine } from '../../src/machines/index.ts';
import type { WireError } from '../../src/errors.ts';
import { EffectGate } from '../../src/replay/gate.ts';
import { bindGate, gatedMachine } from '../../src/replay/gated-logic.ts';
import { request } from '../helpers/fake-effects.ts';

function started(gate: EffectGate) {
  const actor = createActor(gatedMachine(sandboxMachine), { input: { id: 'sb1', request: request(), rid: 'r1' } });
  bindGate(actor, 'sb1', gate);
  actor.start();
  return actor;
}

describe('gated effect logic', () => {
  it('asks the gate as its state invokes it, and takes an outcome synchronously', () => {
    const gate = new EffectGate();
    const actor = started(gate);
    expect(gate.pending()).toEqual([{ taskId: 'sb1', name: 'validate' }]);
    const error: WireError = { code: 'InvalidArgument', message: 'bad bundle', retryable: false };
    expect(gate.deliver('sb1', 'validate', { ok: false, error })).toBe('taken');
    // No await: the failure was taken and the machine left `validating` inside deliver.
    expect(actor.getSnapshot().value).not.toBe('validating');
    expect(gate.pending().some((p) => p.name === 'validate')).toBe(false);
    actor.stop();
  });

  it('hands nothing to an effect that did not ask, and leaves an effect in flight once live', () => {
    const gate = new EffectGate();
    const actor = started(gate);
    expect(gate.deliver('sb1', 'configure', { ok: true, output: {} })).toBe(false);
    gate.goLive();
    expect(actor.getSnapshot().value).toBe('validating');
    expect(actor.getSnapshot().status).toBe('active');
    actor.stop();
  });

  it('names effects as the log records them', () => {
    expect(effectName('runStep', { step: { kind: 'mkdir' } })).toBe('mkdir');
    expect(effectName('act', { act: { op: 'pause' } })).toBe('act:pause');
    expect(effectName('compensate', { kind: 'unmountAll' })).toBe('undo:unmountAll');
    expect(effectName('backoff', { ms: 10 })).toBe('timer');
    expect(effectName('validate', {})).toBe('validate');
  });
});
