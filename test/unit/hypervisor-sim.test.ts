/**
 * The Hypervisor interface's contract, driven through the simulated driver (no QEMU): boot, processes,
 * their output and exactly one exit each (after the start resolved), signals, stop, and the errors by code.
 */
import { describe, expect, it } from 'vitest';
import { CorralError } from '../../src/errors.ts';
import type { ProcessSpec } from '../../src/domain/ops.ts';
import type {
  ExitEvent,
  Hypervisor,
  HypervisorEvent,
  HypervisorEvents,
  VmExitEvent,
} from '../../src/workers/hypervisor/hypervisor.ts';
import { SimDriver } from '../../src/workers/hypervisor/sim.ts';
import { bootSpec } from '../helpers/fake-effects.ts';

const proc = (sandboxId: string, containerId: string, args: string[]): ProcessSpec => ({
  sandboxId,
  containerId,
  args,
  env: [],
  cwd: '/',
  uid: 0,
  gid: 0,
  additionalGids: [],
  terminal: false,
});

/** The events the driver emits, in order, as text. */
function record(hv: Hypervisor) {
  const seen: string[] = [];
  hv.on('output', (s, c, fd, d) => seen.push(`output ${s}/${c} fd ${fd}: ${Buffer.from(d).toString()}`));
  hv.on('exit', (e) => seen.push(`exit ${e.sandboxId}/${e.containerId} ${e.exitStatus}`));
  hv.on('vmExit', (e) => seen.push(`vmExit ${e.sandboxId}`));
  return seen;
}

/** The next `event` whose arguments satisfy `pred`. */
function next<E extends HypervisorEvent>(
  hv: Hypervisor,
  event: E,
  pred: (...args: HypervisorEvents[E]) => boolean = () => true,
): Promise<HypervisorEvents[E]> {
  return new Promise((resolve) => {
    const on = (...args: HypervisorEvents[E]) => {
      if (!pred(...args)) return;
      hv.off(event, on);
      resolve(args);
    };
    hv.on(event, on);
  });
}
const exitOf = (hv: Hypervisor, containerId: string) =>
  next(hv, 'exit', (e) => e.containerId === containerId).then(([e]) => e);

async function rejection(p: Promise<unknown> | (() => unknown)): Promise<CorralError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    expect(e).toBeInstanceOf(CorralError);
    return e as CorralError;
  }
  throw new Error('expected a rejection');
}

describe('Hypervisor (simulated driver)', () => {
  it('boots a VM per sandbox, lists it, and refuses a second one', async () => {
    const hv: Hypervisor = new SimDriver();
    const r = await hv.boot(bootSpec('sb'), AbortSignal.timeout(1000));
    expect(r).toMatchObject({ accel: 'tcg', bootMs: 0 });
    expect(hv.list()).toEqual([
      { sandboxId: 'sb', pid: r.pid, accel: 'tcg', state: 'running', startedAt: 0, processes: [] },
    ]);
    expect(hv.scanHost()).toEqual([{ sandboxId: 'sb', pid: r.pid }]);
    expect((await rejection(hv.boot(bootSpec('sb'), AbortSignal.timeout(1000)))).code).toBe('AlreadyExists');
    const ac = new AbortController();
    ac.abort(new CorralError('Cancelled', 'gave up'));
    expect((await rejection(hv.boot(bootSpec('other'), ac.signal))).code).toBe('Cancelled');
    expect(await hv.adoptAll()).toEqual({ adopted: [], stopped: [], dead: [] });
    await hv.settled('sb');
  });

  it('runs a process: its output, then exactly one exit, both after the start resolved', async () => {
    const hv: Hypervisor = new SimDriver();
    await hv.boot(bootSpec('sb'), AbortSignal.timeout(1000));
    const seen = record(hv);
    const exited = exitOf(hv, 'c1');
    const started = await hv.startProcess(proc('sb', 'c1', ['echo', 'hello', 'world']));
    expect(started).toMatchObject({ started: true });
    expect(seen).toEqual([]); // nothing before the start's resolution was seen
    const e: ExitEvent = await exited;
    expect(e).toMatchObject({ kind: 'exit', sandboxId: 'sb', containerId: 'c1', exitStatus: 0 });
    expect(seen).toEqual(['output sb/c1 fd 1: hello world\n', 'exit sb/c1 0']);

    for (const [cid, cmd, status] of [
      ['t', 'true', 0],
      ['f', 'false', 1],
    ] as const) {
      const done = exitOf(hv, cid);
      await hv.startProcess(proc('sb', cid, [cmd]));
      expect((await done).exitStatus).toBe(status);
    }
  });

  it('a signalled process exits 128 + signal; only running processes are signalled', async () => {
    const hv: Hypervisor = new SimDriver();
    await hv.boot(bootSpec('sb'), AbortSignal.timeout(1000));
    await hv.startProcess(proc('sb', 'sleeper', ['sleep', '600']));
    expect(hv.list()[0]!.processes).toEqual(['sleeper']);
    expect((await rejection(hv.startProcess(proc('sb', 'sleeper', ['sleep', '1'])))).code).toBe('AlreadyExists');
    const exited = exitOf(hv, 'sleeper');
    expect(hv.signal('sb', 'sleeper', 15)).toEqual({ delivered: true });
    expect((await exited).exitStatus).toBe(143);
    expect(hv.list()[0]!.processes).toEqual([]);
    expect(hv.signal('sb', 'sleeper', 9)).toEqual({ delivered: false });
    expect(hv.signal('sb', 'nobody', 9)).toEqual({ delivered: false });
    expect((await rejection(() => hv.signal('sb', 'sleeper', 0))).code).toBe('InvalidArgument');
    expect((await rejection(() => hv.signal('no-vm', 'x', 9))).code).toBe('NotFound');
    expect((await rejection(hv.startProcess(proc('no-vm', 'x', ['true'])))).code).toBe('NotFound');
  });

  it('stop ends the running processes with 255, emits no vmExit, and is idempotent', async () => {
    const hv: Hypervisor = new SimDriver();
    await hv.boot(bootSpec('sb'), AbortSignal.timeout(1000));
    await hv.startProcess(proc('sb', 'a', ['sleep', '600']));
    await hv.startProcess(proc('sb', 'b', ['sleep', '600']));
    const vmExits: VmExitEvent[] = [];
    hv.on('vmExit', (e) => vmExits.push(e));
    const exits = Promise.all([exitOf(hv, 'a'), exitOf(hv, 'b')]);
    expect(await hv.stop('sb', Date.now() + 1000)).toEqual({ stopped: true });
    expect((await exits).map((e) => e.exitStatus)).toEqual([255, 255]);
    expect(hv.list()).toEqual([]);
    expect(await hv.stop('sb')).toEqual({ stopped: false });
    await hv.boot(bootSpec('sb'), AbortSignal.timeout(1000)); // the sandbox may have a VM again
    await hv.stopAll(Date.now() + 1000);
    expect(hv.list()).toEqual([]);
    // A later process's exit comes after anything the stops could have emitted: still no vmExit.
    await hv.boot(bootSpec('sb2'), AbortSignal.timeout(1000));
    const later = exitOf(hv, 'later');
    await hv.startProcess(proc('sb2', 'later', ['true']));
    await later;
    expect(vmExits).toEqual([]);
  });
});
