/**
 * The agent SIGKILLed at every step of create, start and delete (an injection point the test arms,
 * not a sleep): before an effect runs, after the worker did it but before the agent journaled it, and
 * after it was journaled. A new agent recovers from the event log and the sandbox converges to where
 * it should be; afterwards nothing is left and the whole log (before and after the crash) replays to
 * exactly the recorded states.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replay } from '../../src/replay/engine.ts';
import { readRecords } from '../../src/bus/eventlog-reader.ts';
import { NOTHING_LEFT, testNode, type TestNode } from '../helpers/node.ts';
import { waitFor } from '../helpers/wait.ts';

let n: TestNode;
beforeAll(async () => {
  n = await testNode({ faults: true });
});
afterAll(async () => {
  await n?.cleanup();
});

const CREATE = [
  'after:create-input',
  ...['validate', 'configure', 'mountRootfs', 'mkdir', 'bind', 'boot'].flatMap((s) => [
    `before:${s}`,
    `during:${s}`,
    `after:${s}`,
  ]),
];
const START = ['before:startProcess', 'during:startProcess', 'after:startProcess'];
const DELETE = ['stopVm', 'removeTree', 'unmountAll'].flatMap((s) => [
  `before:undo:${s}`,
  `during:undo:${s}`,
  `after:undo:${s}`,
]);
const KILL = ['before:signal', 'during:signal', 'after:signal'];
const EXEC = ['before:act:execStart', 'during:act:execStart', 'after:act:execStart'];
const PAUSE = ['before:act:pause', 'during:act:pause', 'after:act:pause'];
const ROLLBACK = ['before:undo:removeTree', 'after:undo:unmountAll'];
let tested = 0;
afterAll(() => {
  console.log(
    `recovery: ${tested} agent kill points tested (${CREATE.length} in create, ${START.length} in start, ` +
      `${KILL.length} in kill, ${EXEC.length} in an exec's start, ${PAUSE.length} in pause, ` +
      `${DELETE.length} in delete, ${ROLLBACK.length} in a create's rollback)`,
  );
});

const state = async (id: string) => (await n.call<{ state: string; status: string }>('state', { id })).state;
/** Waits until the task's state (or the code its `state` call fails with: NotFound once it is gone) is `want`. */
const converges = (id: string, want: string | RegExp) =>
  waitFor(() => state(id).catch((e: { code?: string }) => e.code ?? String(e)), {
    until: (s) => (typeof want === 'string' ? s === want : want.test(s)),
    timeoutMs: 60_000,
    intervalMs: 100,
    what: `${id} to be ${String(want)}`,
  });
const tmpfsRootfs = [{ type: 'tmpfs', source: 'tmpfs', options: ['size=4m'] }];

/** Arm a crash point, run `f` (whose requests die with the agent), wait for the kill, start a clean agent. */
async function crashDuring(point: string, f: () => Promise<unknown>) {
  await n.restartAgent({ CORRAL_TEST_CRASH: point });
  const died = n.exited();
  void f().catch(() => {});
  await died;
  await n.restartAgent();
  tested++;
}

async function expectClean(id: string) {
  await n.expectNothingLeft([id]);
  const recs = await readRecords(n.nc, { node: n.node, sandbox: id });
  const r = await replay(recs);
  expect(r.divergence, JSON.stringify(r.divergence)).toBeUndefined();
  // Every state the rebuild went through has its record, none twice in a row: a state record that waited to
  // share a message (eventlog.ts Share) and died with the agent was written again by the recovered one.
  for (const t of r.tasks) {
    const states = recs.filter((x) => x.kind === 'state' && x.taskId === t.taskId).map((x) => JSON.stringify(x.value));
    expect(states.filter((v, i) => v !== states[i - 1])).toEqual(t.visited);
  }
  for (const t of r.tasks) t.actor.stop();
  const facts = recs.filter((x) => ['created', 'started', 'exited', 'deleted'].includes(x.kind)).map((x) => x.kind);
  return facts;
}

describe('agent killed during create converges to created', () => {
  it.each(CREATE)('%s', async (point) => {
    const id = `c-${point.replace(/[^a-z]/gi, '')}`;
    const b = n.bundle(id, { args: ['sleep', '600'], emptyRootfs: true });
    await crashDuring(point, () => n.call('create', { id, bundle: b, rootfs: tmpfsRootfs }, 60_000));
    await converges(id, 'created');
    await n.call('delete', { id });
    expect(await expectClean(id)).toEqual(['created', 'deleted']);
  });
});

describe('agent killed during start converges to running', () => {
  it.each(START)('%s', async (point) => {
    const id = `s-${point.replace(/[^a-z]/gi, '')}`;
    await n.call('create', { id, bundle: n.bundle(id, { args: ['sleep', '600'] }) });
    await crashDuring(point, () => n.call('start', { id }, 60_000));
    await converges(id, /running/);
    await n.call('kill', { id, signal: 9 });
    await n.call('wait', { id });
    await n.call('delete', { id });
    expect(await expectClean(id)).toEqual(['created', 'started', 'exited', 'deleted']);
  });
});

describe('agent killed during delete finishes the teardown', () => {
  it.each(DELETE)('%s', async (point) => {
    const id = `d-${point.replace(/[^a-z]/gi, '')}`;
    await n.call('create', {
      id,
      bundle: n.bundle(id, { args: ['sleep', '600'], emptyRootfs: true }),
      rootfs: tmpfsRootfs,
    });
    await crashDuring(point, () => n.call('delete', { id }, 60_000));
    await converges(id, 'NotFound');
    await expect(n.call('state', { id })).rejects.toMatchObject({ code: 'NotFound' });
    expect(await expectClean(id)).toEqual(['created', 'deleted']); // never started: nothing exited
  });
});

describe('agent killed during kill: the signal is delivered, the task exits', () => {
  it.each(KILL)('%s', async (point) => {
    const id = `k-${point.replace(/[^a-z]/gi, '')}`;
    await n.call('create', { id, bundle: n.bundle(id, { args: ['sleep', '600'] }) });
    await n.call('start', { id });
    await crashDuring(point, () => n.call('kill', { id, signal: 9 }, 60_000));
    // `before`: the signal never left; the caller (whose request died) asks again, as containerd does.
    if (point.startsWith('before')) await n.call('kill', { id, signal: 9 });
    expect(await n.call('wait', { id }, 60_000)).toMatchObject({ exitStatus: 137 });
    await n.call('delete', { id });
    expect(await expectClean(id)).toEqual(['created', 'started', 'exited', 'deleted']);
  });
});

describe("agent killed during an exec's start: the exec runs once, its exit is recorded", () => {
  it.each(EXEC)('%s', async (point) => {
    const id = `x-${point.replace(/[^a-z]/gi, '')}`;
    await n.call('create', { id, bundle: n.bundle(id, { args: ['sleep', '600'] }) });
    await n.call('start', { id });
    await n.call('exec', { id, execId: 'e', spec: { args: ['sleep', '600'], env: ['PATH=/bin'] } });
    await crashDuring(point, () => n.call('start', { id, execId: 'e' }, 60_000));
    // Every point, `before` included: the start was journaled before the crash, so the recovered agent
    // finishes it (a caller asking again gets FailedPrecondition "exec running", as runc answers).
    await waitFor(() => n.call<{ status: string }>('state', { id, execId: 'e' }), {
      until: (v) => v.status === 'running',
      timeoutMs: 60_000,
      what: 'the exec to run',
    });
    await n.call('kill', { id, execId: 'e', signal: 9 });
    expect(await n.call('wait', { id, execId: 'e' }, 60_000)).toMatchObject({ exitStatus: 137 });
    await n.call('delete', { id, execId: 'e' });
    await n.call('kill', { id, signal: 9 });
    await n.call('wait', { id });
    await n.call('delete', { id });
    expect(await expectClean(id)).toEqual(['created', 'started', 'exited', 'deleted']);
  });
});

describe('agent killed during pause: the task converges to paused, and resumes', () => {
  it.each(PAUSE)('%s', async (point) => {
    const id = `p-${point.replace(/[^a-z]/gi, '')}`;
    await n.call('create', { id, bundle: n.bundle(id, { args: ['sleep', '600'] }) });
    await n.call('start', { id });
    await crashDuring(point, () => n.call('pause', { id }, 60_000));
    if (point.startsWith('before')) await n.call('pause', { id });
    await waitFor(() => n.call<{ status: string }>('state', { id }), {
      until: (v) => v.status === 'paused',
      timeoutMs: 60_000,
      what: 'the task to be paused',
    });
    await n.call('resume', { id });
    expect(await n.call('state', { id })).toMatchObject({ status: 'running' });
    await n.call('kill', { id, signal: 9 });
    await n.call('wait', { id });
    await n.call('delete', { id });
    expect(await expectClean(id)).toEqual(['created', 'started', 'exited', 'deleted']);
  });
});

describe("agent killed while a failed create's rollback unwinds: the rollback finishes", () => {
  it.each(ROLLBACK)('%s', async (point) => {
    const id = `rb-${point.replace(/[^a-z]/gi, '')}`;
    await n.fault('hypervisor', 'boot', 'fail');
    await crashDuring(point, () =>
      n.call(
        'create',
        { id, bundle: n.bundle(id, { args: ['sleep', '600'], emptyRootfs: true }), rootfs: tmpfsRootfs },
        60_000,
      ),
    );
    await converges(id, 'NotFound');
    expect(await expectClean(id)).toEqual([]);
  });
});

describe('reconciliation on agent start', () => {
  it('cleans up what no task owns (a VM, mounts, a sandbox dir, a VMM user) and reports each as an event', async () => {
    const { execFileSync, spawn } = await import('node:child_process');
    const { existsSync, mkdirSync } = await import('node:fs');
    const ghost = `${n.dataDir}/run/sandboxes/ghost`;
    mkdirSync(`${ghost}/shared/ghost/rootfs`, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', `${ghost}/shared/ghost/rootfs`]);
    execFileSync('useradd', [
      '-M',
      '-s',
      '/usr/sbin/nologin',
      '-c',
      `Corral temporary hypervisor user of sandbox ghost on ${n.node}`,
      'corral-99999',
    ]);
    // Another node's user on the same host is not this node's to remove.
    execFileSync('useradd', [
      '-M',
      '-s',
      '/usr/sbin/nologin',
      '-c',
      'Corral temporary hypervisor user of sandbox ghost on elsewhere',
      'corral-99998',
    ]);
    const qemu = spawn(
      'qemu-system-x86_64',
      [
        '-name',
        'corral-ghost',
        '-M',
        'none',
        '-nographic',
        '-nodefaults',
        '-display',
        'none',
        '-fsdev',
        `local,id=fs0,path=${ghost}/shared,security_model=none`,
      ],
      { stdio: 'ignore', detached: true },
    );
    const { processesMatching, usersWithPrefix } = await import('../helpers/leaks.ts');
    await waitFor(() => processesMatching('-name corral-ghost ').length === 1, {
      timeoutMs: 30_000,
      what: 'the ghost QEMU to run',
    });
    qemu.unref();

    await n.restartAgent();
    expect(usersWithPrefix('corral-')).toEqual(['corral-99998']);
    execFileSync('userdel', ['-f', 'corral-99998']);
    expect(n.leftovers(['ghost'])).toEqual(NOTHING_LEFT);
    expect(existsSync(ghost)).toBe(false);
    const orphans = (await readRecords(n.nc, { node: n.node, sandbox: 'ghost' })).filter((r) => r.kind === 'orphan');
    expect(orphans.map((o) => [(o.action as { kind: string }).kind, o.ok])).toEqual([
      ['stopVm', true],
      ['unmount', true],
      ['removeTree', true],
      ['removeUser', true],
    ]);
    expect(await (await fetch(n.metricsUrl)).text()).toContain('corral_leaks_found_total 4');
  });
});
