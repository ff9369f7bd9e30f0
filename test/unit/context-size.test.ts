/**
 * A task's context stays at most 19 keys through a whole life (create, start, an exec, a kill, the exit,
 * the delete). xstate copies the context with Object.assign({}, context, update) on every assign, and V8
 * makes such a copy of 20 keys or more a dictionary: about 13 times slower to copy, measured here
 * (machines/lifecycle.ts). A key added to LifecycleContext counts against this; optional ones only once set.
 */
import { describe, expect, it } from 'vitest';
import { sandboxMachine, upgradeSnapshot } from '../../src/machines/index.ts';
import { fakeEffects, run, until } from '../helpers/fake-effects.ts';

const LIMIT = 19;
const proc = { args: ['sh'], env: [], cwd: '/', uid: 0, gid: 0, additionalGids: [], terminal: false, stdin: false };

describe('the context of a task', () => {
  it(`keeps at most ${LIMIT} keys from its create to its delete`, async () => {
    const f = fakeEffects();
    const { actor } = run(sandboxMachine, f.fx);
    let most = 0;
    let widest = '';
    actor.subscribe((s) => {
      const keys = Object.keys(s.context);
      if (keys.length > most) [most, widest] = [keys.length, `${JSON.stringify(s.value)}: ${keys.join(', ')}`];
    });
    await until(actor, (s) => s === 'created');
    actor.send({ type: 'start', rid: 's', at: 1 });
    await until(actor, (s) => s === '{"running":"idle"}');
    actor.send({ type: 'exec', rid: 'x', execId: 'e1', process: proc, at: 2 });
    actor.send({ type: 'execStart', rid: 'xs', execId: 'e1', at: 3 });
    actor.send({ type: 'kill', rid: 'k', signal: 15, all: false, at: 4 }); // queued behind the exec's start
    await until(actor, (s) => s === '{"running":"idle"}');
    actor.send({ type: 'exit', exitStatus: 0, exitedAt: 5 });
    await until(actor, (s) => s.startsWith('{"stopped"'));
    actor.send({ type: 'delete', rid: 'd', at: 6 });
    await until(actor, (s) => s === 'deleted');
    expect(most, widest).toBeGreaterThan(15); // it did go through the exec and the kill
    expect(most, widest).toBeLessThanOrEqual(LIMIT);
  });
});

describe('a snapshot persisted before kills and acts became one key each', () => {
  it('is read in the new shape: the kill in flight first, then the queued ones; the act in flight first', () => {
    const kill = { signal: 15, all: false };
    const old = {
      value: { running: 'signalling' },
      context: {
        id: 't',
        pendingRid: 'k0',
        pendingKill: kill,
        queuedKills: [{ rid: 'k1', signal: 9, all: true }],
        pendingAct: null,
        queuedActs: [{ rid: 'a1', act: { op: 'pause' } }],
      },
    };
    expect(upgradeSnapshot(old)).toEqual({
      value: { running: 'signalling' },
      context: {
        id: 't',
        pendingRid: null,
        kills: [
          { rid: 'k0', ...kill },
          { rid: 'k1', signal: 9, all: true },
        ],
        acts: [{ rid: 'a1', act: { op: 'pause' } }],
      },
    });
    const idle = { value: 'created', context: { id: 't', pendingRid: 's', pendingKill: null, queuedKills: [] } };
    expect(upgradeSnapshot(idle)).toEqual({ value: 'created', context: { id: 't', pendingRid: 's' } });
    const current = { value: 'created', context: { id: 't', pendingRid: null } };
    expect(upgradeSnapshot(current)).toBe(current);
  });
});
