/**
 * containerd with the corral runtime when a process dies under a running task: the shim SIGKILLed
 * (containerd runs `shim delete`, which stops and deletes the task through the agent), containerd SIGKILLed
 * and restarted (it reconnects through the bundle's `address` file: the task still runs), the agent
 * SIGKILLed and restarted (the shim's calls wait for the new agent, which recovered the task). Each ends with
 * nothing left: no shim, no mount, no QEMU, no VMM user.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { corralContainerd, hex64, IMAGE, status, type CorralContainerd } from '../helpers/corral-containerd.ts';
import { waitFor } from '../helpers/wait.ts';

let k: CorralContainerd;
beforeAll(async () => {
  k = await corralContainerd();
});
afterAll(async () => {
  await k?.stop();
});
afterEach(async () => {
  await k.clean();
});

const ls = () => k.ls();
const agentState = (id: string) =>
  k.n.call<{ status: string }>('state', { id }).then(
    (v) => v.status,
    (e: { code?: string }) => e.code ?? 'error',
  );

async function finish(id: string) {
  expect((await k.c.ctr(['task', 'kill', '-s', 'SIGKILL', id])).code).toBe(0);
  await waitFor(ls, { until: (s) => status(id, 'STOPPED').test(s), timeoutMs: 60_000, what: `${id} STOPPED` });
  expect((await k.c.ctr(['task', 'delete', id])).code).toBe(0);
  expect((await k.c.ctr(['container', 'rm', id])).code).toBe(0);
}

describe('containerd, its shim and the agent killed under a running task', () => {
  it('the shim SIGKILLed: containerd’s delete cleans up through the agent', async () => {
    const id = hex64();
    expect((await k.run(['-d', IMAGE, id, 'sleep', '600'])).code).toBe(0);
    const [shim] = k.c.leftovers().shims;
    expect(shim).toBeGreaterThan(0);
    process.kill(shim!, 'SIGKILL');
    await waitFor(() => agentState(id), { until: (s) => s === 'NotFound', timeoutMs: 60_000, what: 'task gone' });
    await waitFor(ls, { until: (s) => !s.includes(id), timeoutMs: 30_000, what: 'containerd to drop the task' });
    expect((await k.c.ctr(['container', 'rm', id])).code).toBe(0);
  });

  it('containerd SIGKILLed and restarted: it reconnects, the task still runs, then ends normally', async () => {
    const id = hex64();
    expect((await k.run(['-d', IMAGE, id, 'sleep', '600'])).code).toBe(0);
    const shims = k.c.leftovers().shims;
    await k.c.kill('SIGKILL');
    await k.c.restart();
    await waitFor(ls, { until: (s) => status(id, 'RUNNING').test(s), timeoutMs: 30_000, what: `${id} RUNNING` });
    expect(k.c.leftovers().shims).toEqual(shims); // the same shim, reconnected
    const e = await k.c.ctr(['task', 'exec', '--exec-id', 'after', id, 'echo', 'still-here']);
    expect(e.stdout).toBe('still-here\n');
    await finish(id);
  });

  it('the agent SIGKILLed and restarted: the shim keeps serving, the task is recovered', async () => {
    const id = hex64();
    expect((await k.run(['-d', IMAGE, id, 'sleep', '600'])).code).toBe(0);
    await k.n.restartAgent();
    await waitFor(ls, { until: (s) => status(id, 'RUNNING').test(s), timeoutMs: 30_000, what: `${id} RUNNING` });
    const e = await k.c.ctr(['task', 'exec', '--exec-id', 'after', id, 'sh', '-c', 'echo recovered; exit 2']);
    expect(e.stdout).toBe('recovered\n');
    expect(e.code).toBe(2);
    await finish(id);
  });
});
