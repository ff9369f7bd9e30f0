/** Worker facts: decoded and checked once; an unreadable one is reported and terminated, not redelivered. */
import { describe, expect, it, vi } from 'vitest';
import { encode } from '../../src/bus/codec.ts';
import { decodeWorkerFact, settleWorkerFact, type WorkerFactHandlers } from '../../src/bus/worker-facts.ts';
import { err } from '../../src/errors.ts';

const exit = { kind: 'exit', sandboxId: 's1', containerId: 'c1', exitStatus: 3, exitedAt: 1700 };
const vmExit = { kind: 'vmExit', sandboxId: 's1', code: null, signal: 'SIGKILL', at: 1800 };
const record = (event: unknown) => encode({ node: 'n1', sandbox: 's1', kind: 'worker', at: 1, event });

function delivered(data: Uint8Array) {
  return { data, subject: 'corral.v1.evt.n1.s1.worker', seq: 42, ack: vi.fn(), nak: vi.fn(), term: vi.fn() };
}
function handlers(onFact: WorkerFactHandlers['onFact'] = () => {}) {
  return { onFact: vi.fn(onFact), onDropped: vi.fn() };
}

describe('decodeWorkerFact', () => {
  it('reads exit and vmExit events', () => {
    expect(decodeWorkerFact(record(exit))).toEqual(exit);
    expect(decodeWorkerFact(record(vmExit))).toEqual(vmExit);
    expect(decodeWorkerFact(record({ ...vmExit, code: 137, signal: null }))).toMatchObject({ code: 137 });
  });
  it('refuses anything else with InvalidArgument', () => {
    const bad = [
      new Uint8Array([0xc1]),
      encode('text'),
      encode({ kind: 'worker' }),
      record({ ...exit, sandboxId: 7 }),
      record({ ...exit, exitStatus: '3' }),
      record({ ...vmExit, at: undefined }),
      record({ ...vmExit, signal: 9 }),
      record({ kind: 'reboot', sandboxId: 's1' }),
    ];
    for (const b of bad)
      expect(() => decodeWorkerFact(b), String(b)).toThrow(expect.objectContaining({ code: 'InvalidArgument' }));
  });
});

describe('settleWorkerFact', () => {
  it('acks a fact once it is taken in', async () => {
    const m = delivered(record(exit));
    const h = handlers();
    await settleWorkerFact(m, h);
    expect(h.onFact).toHaveBeenCalledWith(exit);
    expect([m.ack.mock.calls.length, m.nak.mock.calls.length, m.term.mock.calls.length]).toEqual([1, 0, 0]);
  });
  it('terminates an undecodable fact and reports it, without calling onFact', async () => {
    const m = delivered(new Uint8Array([0xc1, 0xff]));
    const h = handlers();
    await settleWorkerFact(m, h);
    expect(h.onFact).not.toHaveBeenCalled();
    expect(m.term).toHaveBeenCalledOnce();
    expect(m.nak).not.toHaveBeenCalled();
    expect(m.ack).not.toHaveBeenCalled();
    expect(h.onDropped).toHaveBeenCalledWith(expect.objectContaining({ code: 'InvalidArgument' }), {
      subject: 'corral.v1.evt.n1.s1.worker',
      seq: 42,
    });
  });
  it('redelivers after a retryable failure (the event log was unreachable), without reporting', async () => {
    const m = delivered(record(exit));
    const h = handlers(() => Promise.reject(err.unavailable('event log append failed')));
    await settleWorkerFact(m, h);
    expect(m.nak).toHaveBeenCalledWith(1000);
    expect(m.term).not.toHaveBeenCalled();
    expect(h.onDropped).not.toHaveBeenCalled();
  });
  it('terminates and reports a fact refused with an error that retrying cannot fix', async () => {
    const m = delivered(record(vmExit));
    const h = handlers(() => {
      throw new TypeError('bug');
    });
    await settleWorkerFact(m, h);
    expect(m.term).toHaveBeenCalledOnce();
    expect(m.nak).not.toHaveBeenCalled();
    expect(h.onDropped).toHaveBeenCalledWith(expect.objectContaining({ code: 'Internal', message: 'bug' }), {
      subject: 'corral.v1.evt.n1.s1.worker',
      seq: 42,
    });
  });
});
