import { describe, expect, it } from 'vitest';
import { sandboxMachine } from '../../src/machines/index.ts';
import { fakeEffects, run, until } from '../helpers/fake-effects.ts';

const replies = (e: { type: string }[]) =>
  e.filter((x) => x.type === 'reply') as unknown as {
    rid: string;
    ok: boolean;
    error?: { code: string; message: string };
    result?: unknown;
  }[];
const facts = (e: { type: string }[]) =>
  e.filter((x) => x.type === 'fact').map((x) => (x as unknown as { kind: string }).kind);

describe('sandbox lifecycle', () => {
  it('creates in order and replies with the VMM pid', async () => {
    const { fx, calls } = fakeEffects();
    const { actor, emitted } = run(sandboxMachine, fx);
    await until(actor, (s) => s === 'created');
    expect(calls).toEqual(['validate', 'configure', 'mountRootfs', 'bind', 'createUser', 'boot']);
    expect(replies(emitted)).toEqual([{ type: 'reply', rid: 'r-create', ok: true, result: { pid: 4242 } }]);
    expect(facts(emitted)).toContain('created');
  });

  it('rolls back completed steps newest first and replies with the original error', async () => {
    const { fx, calls, compensated } = fakeEffects({ failStep: 'boot' });
    const { actor, emitted } = run(sandboxMachine, fx);
    await until(actor, (s) => s.includes('failed'));
    // boot failed with Internal: its outcome is unknown, so a stopVm is pushed for it too.
    expect(compensated).toEqual(['stopVm', 'removeUser', 'unmountAll', 'unmountAll']);
    expect(calls.indexOf('undo:removeUser')).toBeGreaterThan(calls.indexOf('boot'));
    const [r] = replies(emitted);
    expect(r).toMatchObject({ rid: 'r-create', ok: false, error: { code: 'Internal', message: 'boot failed' } });
  });

  it('a step that failed cleanly (InvalidArgument) gets no compensation of its own', async () => {
    const { fx, compensated } = fakeEffects({ failStep: 'bind', failCode: 'InvalidArgument' });
    const { actor } = run(sandboxMachine, fx);
    await until(actor, (s) => s.includes('failed'));
    expect(compensated).toEqual(['unmountAll']);
  });

  it('a bad request fails in validating with nothing to undo', async () => {
    const { fx, calls } = fakeEffects({ failValidate: true });
    const { actor, emitted } = run(sandboxMachine, fx);
    await until(actor, (s) => s.includes('failed'));
    expect(calls).toEqual(['validate']);
    expect(replies(emitted)[0]).toMatchObject({
      ok: false,
      error: { code: 'InvalidArgument', message: 'Missing bundle path' },
    });
  });

  it('retries a failing compensation with back-off and keeps the original error', async () => {
    const { fx, calls, compensated } = fakeEffects({
      failStep: 'boot',
      failCompensation: { kind: 'removeUser', times: 2 },
    });
    const { actor, emitted } = run(sandboxMachine, fx);
    await until(actor, (s) => s.includes('failed'));
    expect(calls.filter((c) => c === 'undo:removeUser')).toHaveLength(3);
    expect(calls.filter((c) => c === 'sleep')).toHaveLength(2);
    expect(compensated).toContain('removeUser');
    expect(replies(emitted)[0]!.error!.message).toBe('boot failed');
  });

  it('never drops a compensation: leftovers are retried until they succeed, delete waits for them', async () => {
    const { fx, compensated } = fakeEffects({ failStep: 'boot', failCompensation: { kind: 'removeUser', times: 6 } });
    const { actor, emitted } = run(sandboxMachine, fx);
    await until(actor, (s) => s.includes('failed') && s.includes('clean'));
    expect(compensated.filter((c) => c === 'removeUser')).toHaveLength(1);
    actor.send({ type: 'delete', rid: 'r-del', at: 1 });
    await until(actor, (s) => s === 'deleted');
    expect(replies(emitted).find((r) => r.rid === 'r-del')!.ok).toBe(true);
  });

  it('start, exit, delete: facts in containerd order', async () => {
    const { fx } = fakeEffects();
    const { actor, emitted } = run(sandboxMachine, fx);
    await until(actor, (s) => s === 'created');
    actor.send({ type: 'start', rid: 'r-start', at: 1 });
    await until(actor, (s) => s.includes('running'));
    actor.send({ type: 'exit', exitStatus: 3, exitedAt: 5 });
    await until(actor, (s) => s.includes('stopped'));
    actor.send({ type: 'delete', rid: 'r-del', at: 6 });
    await until(actor, (s) => s === 'deleted');
    expect(facts(emitted).filter((k) => k !== 'stepDone')).toEqual(['created', 'started', 'exited', 'deleted']);
    expect(replies(emitted).find((r) => r.rid === 'r-del')!.result).toEqual({ exitStatus: 3, exitedAt: 5, pid: 4242 });
  });

  it('rejects commands a state does not accept with FailedPrecondition naming the state', async () => {
    const { fx } = fakeEffects();
    const { actor, emitted } = run(sandboxMachine, fx);
    await until(actor, (s) => s === 'created');
    actor.send({ type: 'start', rid: 'r1', at: 1 });
    await until(actor, (s) => s.includes('running'));
    actor.send({ type: 'delete', rid: 'r2', at: 2 });
    expect(replies(emitted).find((r) => r.rid === 'r2')).toMatchObject({
      ok: false,
      error: { code: 'FailedPrecondition', message: 'cannot delete task in running state' },
    });
  });

  it('kill while running signals; a stopped task: SIGKILL/SIGTERM do nothing, another signal is NotFound', async () => {
    const { fx, calls } = fakeEffects();
    const { actor, emitted } = run(sandboxMachine, fx);
    await until(actor, (s) => s === 'created');
    actor.send({ type: 'start', rid: 'r1', at: 1 });
    await until(actor, (s) => s.includes('running'));
    actor.send({ type: 'kill', rid: 'k1', signal: 15, all: true, at: 2 });
    await until(actor, () => replies(emitted).some((r) => r.rid === 'k1'));
    expect(calls).toContain('signal:15');
    actor.send({ type: 'exit', exitStatus: 143, exitedAt: 3 });
    await until(actor, (s) => s.includes('stopped'));
    actor.send({ type: 'kill', rid: 'k2', signal: 9, all: true, at: 4 });
    actor.send({ type: 'kill', rid: 'k3', signal: 1, all: true, at: 4 });
    actor.send({ type: 'kill', rid: 'k4', signal: 15, all: true, at: 4 });
    expect(replies(emitted).find((r) => r.rid === 'k2')!.ok).toBe(true);
    expect(replies(emitted).find((r) => r.rid === 'k3')!.error).toEqual({
      code: 'NotFound',
      message: 'process already finished',
      retryable: false,
    });
    expect(replies(emitted).find((r) => r.rid === 'k4')!.ok).toBe(true);
    expect(calls.filter((c) => c.startsWith('signal:'))).toEqual(['signal:15']); // none reached the guest
  });

  it('a kill whose process exits before the signal is answered still gets its reply (exit or VM death)', async () => {
    for (const gone of [
      { type: 'exit', exitStatus: 143, exitedAt: 3 },
      { type: 'hostGone', at: 3 },
    ] as const) {
      const { fx } = fakeEffects();
      const { actor, emitted } = run(sandboxMachine, fx);
      await until(actor, (s) => s === 'created');
      actor.send({ type: 'start', rid: 'r1', at: 1 });
      await until(actor, (s) => s.includes('running'));
      actor.send({ type: 'kill', rid: 'k1', signal: 15, all: true, at: 2 });
      actor.send(gone); // before the signal effect's own reply (a microtask away)
      await until(actor, (s) => s.includes('stopped'));
      expect(
        replies(emitted).filter((r) => r.rid === 'k1'),
        gone.type,
      ).toEqual([{ type: 'reply', rid: 'k1', ok: true, result: {} }]);
    }
  });

  it('a second kill while the first is being signalled: each is signalled and answered exactly once', async () => {
    const { fx, calls } = fakeEffects();
    const held: (() => void)[] = [];
    fx.signal = ({ signal }) => {
      calls.push(`signal:${signal}`);
      return new Promise((resolve) => held.push(() => resolve({})));
    };
    const { actor, emitted } = run(sandboxMachine, fx);
    await until(actor, (s) => s === 'created');
    actor.send({ type: 'start', rid: 'r1', at: 1 });
    await until(actor, (s) => s.includes('running'));
    actor.send({ type: 'kill', rid: 'k1', signal: 2, all: true, at: 2 });
    await until(actor, () => held.length === 1);
    actor.send({ type: 'kill', rid: 'k2', signal: 9, all: true, at: 3 }); // Ctrl-C twice
    held.shift()!();
    await until(actor, () => held.length === 1); // the second is signalled once the first is answered
    expect(replies(emitted).map((r) => r.rid)).toEqual(['r-create', 'r1', 'k1']);
    held.shift()!();
    await until(actor, () => replies(emitted).some((r) => r.rid === 'k2'));
    expect(calls.filter((c) => c.startsWith('signal:'))).toEqual(['signal:2', 'signal:9']);
    expect(replies(emitted).filter((r) => r.rid.startsWith('k'))).toEqual([
      { type: 'reply', rid: 'k1', ok: true, result: {} },
      { type: 'reply', rid: 'k2', ok: true, result: {} },
    ]);
  });

  it('kills queued behind a signal are answered when the process exits meanwhile', async () => {
    const { fx } = fakeEffects();
    fx.signal = () => new Promise(() => {}); // never answered: the exit comes first
    const { actor, emitted } = run(sandboxMachine, fx);
    await until(actor, (s) => s === 'created');
    actor.send({ type: 'start', rid: 'r1', at: 1 });
    await until(actor, (s) => s.includes('running'));
    actor.send({ type: 'kill', rid: 'k1', signal: 15, all: true, at: 2 });
    actor.send({ type: 'kill', rid: 'k2', signal: 9, all: true, at: 2 });
    actor.send({ type: 'exit', exitStatus: 137, exitedAt: 3 });
    await until(actor, (s) => s.includes('stopped'));
    expect(replies(emitted).filter((r) => r.rid.startsWith('k'))).toEqual([
      { type: 'reply', rid: 'k1', ok: true, result: {} },
      { type: 'reply', rid: 'k2', ok: true, result: {} },
    ]);
  });

  it('tags give the task status and the quiet points', async () => {
    const { fx } = fakeEffects();
    const { actor } = run(sandboxMachine, fx);
    await until(actor, (s) => s === 'created');
    const tags = () => [...actor.getSnapshot().tags].sort();
    expect(tags()).toEqual(['created', 'quiet']);
    actor.send({ type: 'start', rid: 'r1', at: 1 });
    await until(actor, (s) => s.includes('running'));
    expect(tags()).toEqual(['quiet', 'running']);
    actor.send({ type: 'exit', exitStatus: 0, exitedAt: 2 });
    await until(actor, (s) => s.includes('clean'));
    expect(tags()).toEqual(['quiet', 'stopped']);
  });

  it('VM death while running exits 255 and tears everything down', async () => {
    const { fx, compensated } = fakeEffects();
    const { actor, emitted } = run(sandboxMachine, fx);
    await until(actor, (s) => s === 'created');
    actor.send({ type: 'start', rid: 'r1', at: 1 });
    await until(actor, (s) => s.includes('running'));
    actor.send({ type: 'hostGone', at: 9 });
    await until(actor, (s) => s.includes('stopped'));
    expect(compensated).toEqual(['stopVm', 'removeUser', 'unmountAll', 'unmountAll']);
    expect(emitted.find((e) => e.type === 'fact' && e.kind === 'exited')).toMatchObject({
      data: { exitStatus: 255, exitedAt: 9 },
    });
  });

  it('a failed start replies with the error and tears down (wait sees 255)', async () => {
    const { fx, compensated } = fakeEffects({ failStart: true });
    const { actor, emitted } = run(sandboxMachine, fx);
    await until(actor, (s) => s === 'created');
    actor.send({ type: 'start', rid: 'r1', at: 1 });
    await until(actor, (s) => s.includes('stopped'));
    expect(replies(emitted).find((r) => r.rid === 'r1')!.ok).toBe(false);
    expect(compensated).toHaveLength(4);
  });
});
