/**
 * Each worker SIGKILLed at each of its steps of create, start and delete (armed through the worker's
 * test-only `__fault` op: `crash` before the op, `crashAfter` once its side effect is done but before it
 * answers). The agent restarts the worker; the sandbox converges (a create rolls back, a start fails
 * with the exit 255, a delete finishes), and afterwards nothing is left on the host.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { localRuntimeConfig } from '../../src/cli/commands/up.ts';
import { REPO, testNode, type TestNode } from '../helpers/node.ts';
import { waitFor } from '../helpers/wait.ts';

let n: TestNode;
let rootless: string;
beforeAll(async () => {
  n = await testNode({ faults: true });
  rootless = join(n.configs, 'rootless.toml');
  writeFileSync(
    rootless,
    localRuntimeConfig(join(REPO, '.corral/guest')).replace('[hypervisor.qemu]', '[hypervisor.qemu]\nrootless = true'),
  );
});
afterAll(async () => {
  await n?.cleanup();
});
// A fresh agent per case: each case kills a worker, and the supervisor's restart intensity is per agent.
beforeEach(async () => {
  await n.restartAgent();
});
let tested = 0;
afterAll(() => {
  console.log(`worker kill: ${tested} worker kill points tested`);
});

const MODES = ['crash', 'crashAfter'] as const;
const tmpfs = [{ type: 'tmpfs', source: 'tmpfs', options: ['size=4m'] }];
const gone = async (id: string) => {
  await waitFor(() => n.call('state', { id }).catch((e: { code?: string }) => e.code), {
    until: (s) => s === 'NotFound',
    timeoutMs: 60_000,
    intervalMs: 100,
    what: `task ${id} gone (state: NotFound)`,
  });
};
async function clean(id: string) {
  await n.expectNothingLeft([id], 60_000);
  tested++;
}

describe.each([
  ['mount', 'mountRootfs', false],
  ['mount', 'mkdir', false],
  ['mount', 'bind', false],
  ['hypervisor', 'createUser', true],
  ['hypervisor', 'boot', false],
] as const)('create: the %s worker killed at %s', (kind, op, isRootless) => {
  it.each(MODES)('%s → the create fails with Unavailable and rolls back', async (mode) => {
    // short: unix socket paths are capped at 108 bytes
    const id = `wc-${op.slice(0, 6)}-${mode === 'crash' ? 'b' : 'a'}`.toLowerCase();
    await n.fault(kind, op, mode);
    const b = n.bundle(id, { args: ['sleep', '600'], emptyRootfs: true });
    await expect(
      n.call('create', { id, bundle: b, rootfs: tmpfs, options: isRootless ? { configPath: rootless } : {} }, 60_000),
    ).rejects.toMatchObject({ code: 'Unavailable' });
    await gone(id);
    await clean(id);
  });
});

describe('start: the hypervisor worker killed at startProcess', () => {
  it.each(MODES)('%s → start fails, wait gives 255, teardown leaves nothing', async (mode) => {
    const id = `ws-${mode === 'crash' ? 'b' : 'a'}`;
    await n.call('create', { id, bundle: n.bundle(id, { args: ['sleep', '600'] }) });
    await n.fault('hypervisor', 'startProcess', mode);
    await expect(n.call('start', { id }, 60_000)).rejects.toMatchObject({ code: 'Unavailable' });
    expect(await n.call('wait', { id }, 60_000)).toMatchObject({ exitStatus: 255 });
    await n.call('delete', { id }, 60_000);
    await clean(id);
  });
});

describe.each([
  ['hypervisor', 'stop', false],
  ['hypervisor', 'removeUser', true],
  ['mount', 'removeTree', false],
  ['mount', 'unmountAll', false],
] as const)('delete: the %s worker killed at %s', (kind, op, isRootless) => {
  it.each(MODES)('%s → the teardown is retried after the restart and finishes', async (mode) => {
    const id = `wd-${op.slice(0, 6)}-${mode === 'crash' ? 'b' : 'a'}`.toLowerCase();
    await n.call('create', {
      id,
      bundle: n.bundle(id, { args: ['sleep', '600'], emptyRootfs: true }),
      rootfs: tmpfs,
      options: isRootless ? { configPath: rootless } : {},
    });
    await n.fault(kind, op, mode);
    await n.call('delete', { id }, 120_000).catch(() => {}); // may report the pending cleanup; it goes on
    await gone(id);
    await clean(id);
  });
});

/** What each workload verb sends to the hypervisor worker. */
const WORKLOAD = [
  ['exec', (id: string) => n.call('start', { id, execId: 'x' }, 30_000)],
  ['pause', (id: string) => n.call('pause', { id }, 30_000)],
  ['update', (id: string) => n.call('update', { id, resources: { pids: { limit: 64 } } }, 30_000)],
  ['stats', (id: string) => n.call('stats', { id }, 30_000)],
] as const;
const RETRYABLE = ['Unavailable', 'Timeout'];
/** As a client does with a retryable answer (the worker restarting): ask again until it is served. */
const retried = <T>(f: () => Promise<T>) =>
  waitFor(
    () =>
      f().then(
        (v) => ({ v }),
        (e: { code?: string }) => ({ e }),
      ),
    {
      until: (r) => !('e' in r) || !RETRYABLE.includes(r.e.code ?? ''),
      timeoutMs: 60_000,
      intervalMs: 200,
      what: 'a retryable error to clear',
    },
  ).then((r) => {
    if ('e' in r) throw r.e;
    return r.v;
  });

describe.each(WORKLOAD)('workload: the hypervisor worker killed at %s', (op, verb) => {
  it.each(MODES)('%s → a retryable answer, the task runs on (adopted VM), ends, leaves nothing', async (mode) => {
    const id = `ww-${op}-${mode === 'crash' ? 'b' : 'a'}`;
    await n.call('create', { id, bundle: n.bundle(id, { args: ['sleep', '600'] }) });
    await n.call('start', { id });
    await n.call('exec', { id, execId: 'x', spec: { args: ['sleep', '600'], env: ['PATH=/bin'] } });
    await n.fault('hypervisor', op, mode);
    await verb(id).catch((e: { code?: string }) => expect(RETRYABLE).toContain(e.code)); // or it went through
    await retried(() => n.call('resume', { id }, 30_000)); // a pause that did take is undone (a repeat: no-op)
    // The restarted worker adopted the VM: the task still runs and takes a new exec.
    await n.call('exec', { id, execId: 'y', spec: { args: ['true'], env: ['PATH=/bin'] } });
    await retried(() => n.call('start', { id, execId: 'y' }, 30_000));
    expect(await n.call('wait', { id, execId: 'y' }, 60_000)).toMatchObject({ exitStatus: 0 });
    expect(await n.call('state', { id })).toMatchObject({ status: 'running' });
    await n.call('kill', { id, signal: 9 });
    await n.call('wait', { id }, 60_000);
    await n.call('delete', { id }, 60_000);
    await clean(id);
  });
});
