/**
 * One VM's life without QEMU: the processes of a guest as its agent channel reports them (GuestProcesses,
 * with a fake channel), and the Vm's state transitions, exits and vmExit (a Vm whose QEMU is not ours to kill).
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { CorralError } from '../../src/errors.ts';
import type { ProcessSpec } from '../../src/domain/ops.ts';
import { FRAME, type AgentMsg } from '../../src/workers/hypervisor/agent-channel.ts';
import type { ExitEvent, HypervisorEvents, VmExitEvent } from '../../src/workers/hypervisor/hypervisor.ts';
import { GuestProcesses, checkProcess, runFrame } from '../../src/workers/hypervisor/processes.ts';
import { vmPaths } from '../../src/workers/hypervisor/qemu-args.ts';
import { Vm } from '../../src/workers/hypervisor/vm.ts';

/** A guest's side of the channel: the frame types the host sent, a wait for the next one, a switch to close it. */
function fakeChannel() {
  const sent: number[] = [];
  const waiting: ((type: number) => void)[] = [];
  let open = true;
  return {
    sent,
    close: () => (open = false),
    nextSend: () => new Promise<number>((r) => waiting.push(r)),
    channel: {
      send: (frame: Buffer) => {
        if (!open) return false;
        sent.push(frame[4]!);
        for (const w of waiting.splice(0)) w(frame[4]!);
        return true;
      },
    },
  };
}

function setup(o: { confirmExit?: (e: ExitEvent) => Promise<unknown>; startTimeoutMs?: number } = {}) {
  const events = new EventEmitter<HypervisorEvents>();
  const exits: ExitEvent[] = [];
  const output: string[] = [];
  events.on('exit', (e) => exits.push(e));
  events.on('output', (_s, c, fd, d) => output.push(`${c}/${fd}: ${Buffer.from(d).toString()}`));
  const ch = fakeChannel();
  const hooks = { events, startTimeoutMs: o.startTimeoutMs ?? 5000, confirmExit: o.confirmExit };
  const procs = new GuestProcesses('sb', hooks, () => ch.channel);
  const nextExit = () => new Promise<ExitEvent>((r) => events.once('exit', r));
  return { events, exits, output, ch, procs, nextExit, hooks };
}

const spec = (containerId: string, over: Partial<ProcessSpec> = {}): ProcessSpec => ({
  sandboxId: 'sb',
  containerId,
  args: ['sleep', '1'],
  env: [],
  cwd: '',
  uid: 0,
  gid: 0,
  additionalGids: [],
  terminal: false,
  ...over,
});
const started = (containerId: string, pid = 7): AgentMsg => ({ type: 'started', containerId, pid });
const exit = (containerId: string, status: number): AgentMsg => ({ type: 'exit', containerId, status });

async function rejection(p: Promise<unknown> | (() => unknown)): Promise<CorralError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    expect(e).toBeInstanceOf(CorralError);
    return e as CorralError;
  }
  throw new Error('expected a rejection');
}

describe('GuestProcesses', () => {
  it('a start resolves on STARTED; output, then one exit on a later macrotask, ACKed once confirmed', async () => {
    let confirm = () => {};
    const t = setup({ confirmExit: () => new Promise<void>((r) => (confirm = r)) });
    const pid = t.procs.start('c', runFrame(spec('c')));
    expect(t.ch.sent).toEqual([FRAME.RUN]);
    t.procs.onMsg(started('c', 42));
    expect(await pid).toBe(42);
    expect(t.procs.running()).toEqual(['c']);
    t.procs.onMsg({ type: 'output', containerId: 'c', fd: 2, data: new TextEncoder().encode('oops') });
    const exited = t.nextExit();
    t.procs.onMsg(exit('c', 3));
    expect(t.exits).toEqual([]); // not on the same macrotask
    expect(await exited).toMatchObject({ kind: 'exit', sandboxId: 'sb', containerId: 'c', exitStatus: 3 });
    expect(t.output).toEqual(['c/2: oops']);
    expect(t.ch.sent).toEqual([FRAME.RUN]); // the guest keeps the exit until it is confirmed
    const ack = t.ch.nextSend();
    confirm();
    expect(await ack).toBe(FRAME.ACK);
    expect(t.ch.sent).toEqual([FRAME.RUN, FRAME.ACK]);
    t.procs.onMsg(exit('c', 3)); // reported again (nobody's now): ACKed, not emitted
    expect(t.ch.sent).toEqual([FRAME.RUN, FRAME.ACK, FRAME.ACK]);
    expect(t.exits).toHaveLength(1);
  });

  it("the guest's ERROR keeps its errno's code; a closed channel fails the start with Unavailable", async () => {
    const t = setup();
    const p = t.procs.start('c', runFrame(spec('c')));
    t.procs.onMsg({ type: 'error', containerId: 'c', errno: 2, message: 'exec nope: No such file' });
    expect(await rejection(p)).toMatchObject({ code: 'NotFound', message: expect.stringMatching(/exec nope/) });
    expect(t.procs.has('c')).toBe(false);
    t.ch.close();
    expect((await rejection(t.procs.start('d', runFrame(spec('d'))))).code).toBe('Unavailable');
  });

  it('a start that timed out is an orphan: killed when the guest starts it, its exit not reported', async () => {
    const t = setup({ startTimeoutMs: 10 });
    expect((await rejection(t.procs.start('c', runFrame(spec('c'))))).code).toBe('Timeout');
    t.procs.onMsg(started('c'));
    expect(t.ch.sent).toEqual([FRAME.RUN, FRAME.SIGNAL]);
    t.procs.onMsg(exit('c', 137));
    expect(t.ch.sent).toEqual([FRAME.RUN, FRAME.SIGNAL, FRAME.ACK]);
    expect(t.procs.running()).toEqual([]);
  });

  it('adopted: held messages first, then the exits the guest kept; endAll gives the rest 255', async () => {
    const t = setup();
    const held: AgentMsg[] = [{ type: 'output', containerId: 'run', fd: 1, data: new TextEncoder().encode('x') }];
    t.procs.adopt(
      [
        { containerId: 'run', pid: 1, exited: false, status: 0 },
        { containerId: 'gone', pid: 2, exited: true, status: 5 },
      ],
      held,
    );
    expect(t.output).toEqual(['run/1: x']);
    expect(await t.nextExit()).toMatchObject({ containerId: 'gone', exitStatus: 5 });
    expect(t.procs.signal('run', 15)).toBe(true);
    expect(t.procs.signal('gone', 15)).toBe(false);
    t.procs.endAll();
    expect(await t.nextExit()).toMatchObject({ containerId: 'run', exitStatus: 255 });
    expect(t.exits.map((e) => e.containerId)).toEqual(['gone', 'run']);
  });

  it('checks what the guest agent protocol needs of a process', () => {
    const code = (s: ProcessSpec) => {
      try {
        checkProcess(s);
        return 'ok';
      } catch (e) {
        return e instanceof CorralError ? e.code : 'other';
      }
    };
    expect(code(spec('c'))).toBe('ok');
    expect(code(spec('a/b'))).toBe('InvalidArgument');
    expect(code(spec('..'))).toBe('InvalidArgument');
    expect(code(spec('c', { args: [] }))).toBe('InvalidArgument');
    expect(code(spec('c', { uid: -1 }))).toBe('InvalidArgument');
    expect(code(spec('c', { terminal: true }))).toBe('ok'); // terminals: guest protocol v3
    expect(code(spec('c', { mounts: [{ source: 'x', target: 'rel', fstype: 'bind', flags: 0, data: '' }] }))).toBe(
      'InvalidArgument',
    );
    expect(() => runFrame(spec('c', { env: ['X='.padEnd(1 << 20, 'x')] }))).toThrow(/exceed/);
  });

  it('a read-only root is RUN flag 4, beside the terminal and stdin flags', () => {
    const plain = runFrame(spec('c', { stdin: true }));
    const ro = runFrame(spec('c', { stdin: true, rootReadonly: true }));
    expect([...plain].flatMap((b, i) => (b === ro[i] ? [] : [[b, ro[i]]]))).toEqual([[2, 6]]);
  });
});

describe('Vm', () => {
  /** A Vm with no QEMU of ours (pid -1): destroy has nothing to kill. */
  function vm(state: 'booting' | 'adopting' = 'booting') {
    const t = setup();
    const forgotten: Vm[] = [];
    const v = new Vm(
      { sandboxId: 'sb', pid: -1, accel: 'tcg', state, startedAt: 1, paths: vmPaths('/nonexistent', 'sb') },
      { ...t.hooks, forget: (x) => forgotten.push(x) },
    );
    const vmExits: VmExitEvent[] = [];
    t.events.on('vmExit', (e) => vmExits.push(e));
    return { ...t, v, forgotten, vmExits };
  }

  it('moves only along its transitions', async () => {
    const t = vm();
    expect(t.v.starting).toBe(true);
    expect(t.v.describe()).toMatchObject({ state: 'booting', processes: [] });
    expect((await rejection(() => t.v.to('stopping'))).code).toBe('Internal');
    t.v.to('running');
    expect((await rejection(() => t.v.to('booting'))).code).toBe('Internal');
    expect(t.v.describe()).toEqual({
      sandboxId: 'sb',
      pid: -1,
      accel: 'tcg',
      state: 'running',
      startedAt: 1,
      processes: [],
    });
    expect(vm('adopting').v.describe()).toMatchObject({ state: 'adopting', adoptedAt: 0 });
  });

  it('destroy: stopping → stopped, processes exit 255, forgotten, no vmExit', async () => {
    const t = vm('adopting');
    t.v.takeOver([{ containerId: 'c', pid: 1, exited: false, status: 0 }], []);
    expect(t.v.state).toBe('running');
    const exited = t.nextExit();
    await t.v.destroy(0);
    expect(t.v.state).toBe('stopped'); // through stopping: `to` refuses running → stopped
    expect(t.v.describe()).toBeNull();
    expect(t.forgotten).toEqual([t.v]);
    expect((await exited).exitStatus).toBe(255);
    expect(t.vmExits).toEqual([]);
  });

  it("QEMU dying on its own: the processes' exits, then vmExit with how it ended", async () => {
    const t = vm();
    t.v.to('running');
    t.v.procs.adopt([{ containerId: 'c', pid: 1, exited: false, status: 0 }], []);
    const vmExit = new Promise<VmExitEvent>((r) => t.events.once('vmExit', r));
    t.v.markExited({ code: null, signal: 'SIGKILL' });
    expect(await vmExit).toMatchObject({ kind: 'vmExit', sandboxId: 'sb', code: null, signal: 'SIGKILL' });
    expect(t.exits).toMatchObject([{ containerId: 'c', exitStatus: 255 }]);
    await t.v.gone;
  });

  it('released: not ours any more, its death is not reported', async () => {
    const t = vm();
    t.v.to('running');
    t.v.release();
    expect(t.v.state).toBe('released');
    t.v.markExited({ code: 0, signal: null });
    await t.v.exited; // its exit handler ran first (registered at construction): it did nothing
    expect(t.v.state).toBe('released'); // not destroyed, so no vmExit can follow
    expect(t.vmExits).toEqual([]);
    expect(t.forgotten).toEqual([]);
  });
});
