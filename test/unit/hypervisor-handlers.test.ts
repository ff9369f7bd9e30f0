/**
 * The hypervisor worker's handler table (OpHandlers<'hypervisor'>) over the simulated driver: untrusted
 * requests are parsed into the ops' types, and a bad one is refused with InvalidArgument naming the field.
 */
import { describe, expect, it } from 'vitest';
import { CorralError } from '../../src/errors.ts';
import type { OpContext } from '../../src/domain/ops.ts';
import { hypervisorHandlers } from '../../src/workers/hypervisor/main.ts';
import { SimDriver } from '../../src/workers/hypervisor/sim.ts';
import { bootSpec } from '../helpers/fake-effects.ts';

const ctx = (): OpContext => ({ signal: AbortSignal.timeout(5000), deadlineMs: Date.now() + 5000, opId: 'op-1' });
const table = () => {
  const hv = new SimDriver();
  return { hv, h: hypervisorHandlers(hv, { node: 'n1', adoption: () => null, dropped: () => ({}) }) };
};
const boot = {
  opId: 'b1',
  deadlineMs: Date.now() + 60_000,
  ...bootSpec('sb'),
  bootTimeoutMs: 120_000, // sent by the agent, not part of the spec: ignored
};
const proc = {
  opId: 'p1',
  sandboxId: 'sb',
  containerId: 'c',
  args: ['sleep', '600'],
  env: ['PATH=/bin'],
  cwd: '/',
  uid: 0,
  gid: 0,
  additionalGids: [],
  terminal: false,
};

async function invalid(p: Promise<unknown>, field: RegExp): Promise<void> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(CorralError);
  expect(e).toMatchObject({ code: 'InvalidArgument', message: expect.stringMatching(field) });
}

describe("the hypervisor worker's handlers", () => {
  it('boot, startProcess, signal and stop run on the driver with the parsed requests', async () => {
    const { hv, h } = table();
    const r = await h.boot(boot, ctx());
    expect(r).toMatchObject({ accel: 'tcg', bootMs: 0 });
    expect(await h.startProcess(proc, ctx())).toEqual({ started: true });
    const exited = new Promise<number>((resolve) => hv.on('exit', (e) => resolve(e.exitStatus)));
    expect(await h.signal({ sandboxId: 'sb', containerId: 'c', signal: 9 }, ctx())).toEqual({ delivered: true });
    expect(await exited).toBe(137);
    expect(await h.stop({ sandboxId: 'sb' }, ctx())).toEqual({ stopped: true });
    expect(await h.stop({ sandboxId: 'sb' }, ctx())).toEqual({ stopped: false });
  });

  it('boot: a missing or mistyped field is InvalidArgument naming it', async () => {
    const { h } = table();
    const { vcpus: _, ...noVcpus } = boot;
    await invalid(h.boot(noVcpus, ctx()), /^boot: vcpus must be a number, got undefined/);
    await invalid(h.boot({ ...boot, sandboxId: '' }, ctx()), /^boot: sandboxId must not be empty/);
    await invalid(h.boot({ ...boot, kernel: 7 }, ctx()), /^boot: kernel must be a string, got number/);
    await invalid(h.boot({ ...boot, accel: 'fast' }, ctx()), /^boot: accel must be one of auto, kvm, tcg, got "fast"/);
    await invalid(h.boot({ ...boot, user: 'corral-1' }, ctx()), /^boot: user must be a map, got string/);
    const user = { user: 'corral-00001', uid: 1000, gid: 1000, groups: [], runtimeDir: '/run/user/1000' };
    await invalid(h.boot({ ...boot, user: { ...user, uid: '1000' } }, ctx()), /^boot: user\.uid must be a number/);
    await invalid(h.boot({ ...boot, user: { ...user, groups: [1, 'kvm'] } }, ctx()), /user\.groups\[1\]/);
  });

  it('startProcess, signal, stop, createUser, removeUser: the same', async () => {
    const { h } = table();
    await invalid(h.startProcess({ ...proc, args: 'sh' }, ctx()), /^startProcess: args must be a list, got string/);
    await invalid(h.startProcess({ ...proc, env: ['A=1', 2] }, ctx()), /^startProcess: env\[1\] must be a string/);
    await invalid(h.startProcess({ ...proc, uid: '0' }, ctx()), /^startProcess: uid must be a number/);
    await invalid(h.startProcess({ ...proc, terminal: 'yes' }, ctx()), /^startProcess: terminal must be a boolean/);
    await invalid(h.startProcess({ ...proc, containerId: undefined }, ctx()), /^startProcess: containerId/);
    await invalid(h.signal({ sandboxId: 'sb', containerId: 'c', signal: '9' }, ctx()), /^signal: signal must be a/);
    await invalid(h.stop({}, ctx()), /^stop: sandboxId must be a string, got undefined/);
    await invalid(h.createUser({ sandboxId: 7 }, ctx()), /^createUser: sandboxId must be a string, got number/);
    await invalid(h.removeUser({ uid: 1000 }, ctx()), /^removeUser: sandboxId must be a string/);
    await invalid(h.removeUser({ user: 'corral-00001', uid: '1000' }, ctx()), /^removeUser: uid must be a number/);
  });

  it('absent cwd and terminal mean the container root and no terminal', async () => {
    const { hv, h } = table();
    await h.boot(boot, ctx());
    const { cwd: _c, terminal: _t, ...bare } = proc;
    expect(await h.startProcess(bare, ctx())).toEqual({ started: true });
    expect(hv.list()[0]!.processes).toEqual(['c']);
  });

  it('exec, resize, pause, resume, update, stats, closeStdin and signal of an exec run on the driver', async () => {
    const { hv, h } = table();
    await h.boot(boot, ctx());
    const mounts = [{ source: 'proc', target: '/proc', fstype: 'proc', flags: 14, data: '' }];
    const limits = [{ file: 'pids.max', value: '20' }];
    expect(await h.startProcess({ ...proc, mounts, limits, stdin: true, hostname: 'h' }, ctx())).toEqual({
      started: true,
    });
    expect((await h.stats({ sandboxId: 'sb', containerId: 'c' }, ctx())).pids.limit).toBe(20);
    const exec = { ...proc, opId: 'e1', execId: 'e', args: ['cat'], consoleSize: { rows: 24, cols: 80 } };
    expect(await h.exec(exec, ctx())).toEqual({ started: true, guestPid: 2 });
    expect(hv.list()[0]!.processes.sort()).toEqual(['c', 'c/e']);
    expect(await h.resize({ sandboxId: 'sb', containerId: 'c', execId: 'e', rows: 40, cols: 100 }, ctx())).toEqual({
      resized: true,
    });
    expect(await h.pause({ sandboxId: 'sb' }, ctx())).toEqual({ paused: true });
    expect(await h.resume({ sandboxId: 'sb', containerId: 'c' }, ctx())).toEqual({ resumed: true });
    expect(
      await h.update({ sandboxId: 'sb', containerId: 'c', limits: [{ file: 'pids.max', value: '9' }] }, ctx()),
    ).toEqual({ updated: true });
    expect((await h.stats({ sandboxId: 'sb', containerId: 'c' }, ctx())).pids.limit).toBe(9);
    const exited = new Promise((resolve) => hv.on('exit', resolve));
    expect(await h.signal({ sandboxId: 'sb', containerId: 'c', execId: 'e', signal: 15 }, ctx())).toEqual({
      delivered: true,
    });
    expect(await exited).toMatchObject({ containerId: 'c', execId: 'e', exitStatus: 143 });
    expect(await h.closeStdin({ sandboxId: 'sb', containerId: 'c', execId: 'e' }, ctx())).toEqual({ closed: true });
  });

  it('the workload ops: a missing or mistyped field is InvalidArgument naming it', async () => {
    const { h } = table();
    const ref = { sandboxId: 'sb', containerId: 'c' };
    await invalid(h.startProcess({ ...proc, mounts: [{ target: '/p' }] }, ctx()), /^startProcess: mounts\[0\]\.source/);
    await invalid(h.startProcess({ ...proc, stdin: 1 }, ctx()), /^startProcess: stdin must be a boolean/);
    await invalid(
      h.startProcess({ ...proc, limits: [{ file: 'cgroup.procs', value: '1' }] }, ctx()),
      /^startProcess: limits\[0\]\.file must be one of memory\.max/,
    );
    await invalid(h.startProcess({ ...proc, consoleSize: { rows: 1 } }, ctx()), /consoleSize\.cols must be a number/);
    await invalid(h.exec({ ...proc, execId: 3 }, ctx()), /^exec: execId must be a string, got number/);
    await invalid(h.resize({ ...ref, rows: 1 }, ctx()), /^resize: cols must be a number/);
    await invalid(h.pause({ sandboxId: 'sb', containerId: 4 }, ctx()), /^pause: containerId must be a string/);
    await invalid(h.update({ ...ref, limits: 'x' }, ctx()), /^update: limits must be a list, got string/);
    await invalid(h.stats({ sandboxId: 'sb' }, ctx()), /^stats: containerId must be a string/);
    await invalid(h.signal({ ...ref, execId: '', signal: 9 }, ctx()), /^signal: execId must not be empty/);
  });
});
