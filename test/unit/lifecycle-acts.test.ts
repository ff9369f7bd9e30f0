import { describe, expect, it } from 'vitest';
import { sandboxMachine } from '../../src/machines/index.ts';
import type { ExecProcess } from '../../src/domain/task.ts';
import { deferred } from '../helpers/wait.ts';
import { fakeEffects, run, until } from '../helpers/fake-effects.ts';

type R = { type: string; rid?: string; ok?: boolean; error?: { code: string }; result?: unknown; kind?: string };
const replyOf = (e: R[], rid: string) => e.filter((x) => x.type === 'reply' && x.rid === rid);
const facts = (e: R[]) => e.filter((x) => x.type === 'fact').map((x) => x.kind);
const proc: ExecProcess = {
  args: ['sh'],
  env: [],
  cwd: '/',
  uid: 0,
  gid: 0,
  additionalGids: [],
  terminal: false,
  stdin: false,
};

async function running() {
  const f = fakeEffects();
  const r = run(sandboxMachine, f.fx);
  await until(r.actor, (s) => s === 'created');
  r.actor.send({ type: 'start', rid: 's', at: 1 });
  await until(r.actor, (s) => s.includes('running'));
  return { ...f, ...r, emitted: r.emitted as R[] };
}
const idle = (s: string) => s === '{"running":"idle"}';

describe('a running task: execs and acts', () => {
  it('an exec is added, started, exits and is deleted, each answered once; the task keeps running', async () => {
    const { actor, emitted, calls } = await running();
    actor.send({ type: 'exec', rid: 'x', execId: 'e1', process: proc, at: 2 });
    expect(replyOf(emitted, 'x')).toMatchObject([{ ok: true }]);
    actor.send({ type: 'exec', rid: 'x2', execId: 'e1', process: proc, at: 2 });
    expect(replyOf(emitted, 'x2')).toMatchObject([{ ok: false, error: { code: 'AlreadyExists' } }]);
    actor.send({ type: 'execStart', rid: 'xs', execId: 'e1', at: 3 });
    await until(actor, idle);
    expect(calls).toContain('act:execStart');
    expect(replyOf(emitted, 'xs')).toMatchObject([{ ok: true, result: { pid: 4242 } }]);
    expect(actor.getSnapshot().context.execs!.e1).toMatchObject({ status: 'running', guestPid: 77 });
    actor.send({ type: 'execDelete', rid: 'xd0', execId: 'e1', at: 4 });
    expect(replyOf(emitted, 'xd0')).toMatchObject([{ ok: false, error: { code: 'FailedPrecondition' } }]);
    actor.send({ type: 'execExit', execId: 'e1', exitStatus: 5, exitedAt: 9 });
    actor.send({ type: 'execExit', execId: 'e1', exitStatus: 6, exitedAt: 10 }); // a repeat is ignored
    expect(actor.getSnapshot().context.execs!.e1).toMatchObject({ status: 'stopped', exitStatus: 5 });
    expect(actor.getSnapshot().value).toEqual({ running: 'idle' });
    actor.send({ type: 'execDelete', rid: 'xd', execId: 'e1', at: 11 });
    expect(replyOf(emitted, 'xd')).toMatchObject([{ ok: true, result: { exitStatus: 5, exitedAt: 9, pid: 4242 } }]);
    expect(actor.getSnapshot().context.execs).toEqual({});
    expect(facts(emitted).filter((k) => k!.startsWith('exec'))).toEqual([
      'execAdded',
      'execStarted',
      'execExited',
      'execDeleted',
    ]);
  });

  it('an unknown exec is NotFound for start, kill and delete; a stopped one takes SIGKILL as a no-op', async () => {
    const { actor, emitted } = await running();
    for (const [type, rid] of [
      ['execStart', 'a'],
      ['execDelete', 'b'],
    ] as const)
      actor.send({ type, rid, execId: 'nope', at: 2 });
    actor.send({ type: 'execKill', rid: 'c', execId: 'nope', signal: 9, all: false, at: 2 });
    for (const rid of ['a', 'b', 'c'])
      expect(replyOf(emitted, rid)).toMatchObject([{ ok: false, error: { code: 'NotFound' } }]);
    actor.send({ type: 'exec', rid: 'x', execId: 'e', process: proc, at: 2 });
    actor.send({ type: 'execStart', rid: 'xs', execId: 'e', at: 3 });
    await until(actor, idle);
    actor.send({ type: 'execExit', execId: 'e', exitStatus: 0, exitedAt: 4 });
    actor.send({ type: 'execKill', rid: 'k', execId: 'e', signal: 9, all: false, at: 5 });
    expect(replyOf(emitted, 'k')).toMatchObject([{ ok: true }]);
    actor.send({ type: 'execKill', rid: 'k1', execId: 'e', signal: 1, all: false, at: 5 });
    expect(replyOf(emitted, 'k1')).toMatchObject([{ ok: false, error: { code: 'NotFound' } }]);
  });

  it('pause and resume: state shows paused between, facts once, repeats are no-ops', async () => {
    const { actor, emitted } = await running();
    actor.send({ type: 'pause', rid: 'p', at: 2 });
    await until(actor, () => replyOf(emitted, 'p').length === 1);
    expect(actor.getSnapshot().context.paused).toBe(true);
    actor.send({ type: 'pause', rid: 'p2', at: 3 });
    await until(actor, () => replyOf(emitted, 'p2').length === 1);
    actor.send({ type: 'resume', rid: 'r', at: 4 });
    await until(actor, () => replyOf(emitted, 'r').length === 1);
    expect(actor.getSnapshot().context.paused).toBe(false);
    expect(facts(emitted).filter((k) => k === 'paused' || k === 'resumed')).toEqual(['paused', 'resumed']);
  });

  it('acts and kills arriving while one is in flight are answered in turn; an exit refuses the rest', async () => {
    const held = deferred();
    const f = fakeEffects({ signalHeld: held.promise });
    const { actor, emitted } = run(sandboxMachine, f.fx);
    await until(actor, (s) => s === 'created');
    actor.send({ type: 'start', rid: 's', at: 1 });
    await until(actor, (s) => s.includes('running'));
    const e = emitted as R[];
    actor.send({ type: 'kill', rid: 'k1', signal: 1, all: true, at: 2 });
    actor.send({ type: 'resize', rid: 'z', rows: 40, cols: 100, at: 3 });
    actor.send({ type: 'kill', rid: 'k2', signal: 1, all: true, at: 4 });
    expect(actor.getSnapshot().value).toEqual({ running: 'signalling' });
    held.resolve();
    await until(actor, () => replyOf(e, 'z').length === 1);
    expect(replyOf(e, 'k1')).toHaveLength(1);
    expect(replyOf(e, 'k2')).toHaveLength(1);
    actor.send({ type: 'update', rid: 'u', limits: [{ file: 'pids.max', value: '10' }], at: 5 });
    actor.send({ type: 'exit', exitStatus: 0, exitedAt: 6 });
    await until(actor, (s) => s.includes('stopped') || s === 'stopping');
    expect(replyOf(e, 'u')).toHaveLength(1);
  });

  it('outside running, acts are FailedPrecondition naming the state', async () => {
    const f = fakeEffects();
    const { actor, emitted } = run(sandboxMachine, f.fx);
    await until(actor, (s) => s === 'created');
    actor.send({ type: 'pause', rid: 'p', at: 1 });
    actor.send({ type: 'exec', rid: 'x', execId: 'e', process: proc, at: 1 });
    expect(replyOf(emitted as R[], 'p')).toMatchObject([{ ok: false, error: { code: 'FailedPrecondition' } }]);
    expect(replyOf(emitted as R[], 'x')).toMatchObject([{ ok: false, error: { code: 'FailedPrecondition' } }]);
  });
});
