/**
 * Edges of a task's life on a real node. A task that ends in any way answers what waits on it, and
 * leaves nothing that could bring it back (the two bugs of a randomized fault soak): a `wait` held
 * while the create fails gets the create's failure at once, exactly once; a deleted task's snapshot
 * goes with it (also when the task was recovered by a restarted agent), a snapshot whose records are
 * gone never rebuilds a task, and snapshots no live task owns are removed when the agent starts. A
 * bundle that is a symlink takes rootfs mounts (onto the resolved path). Real agent, workers, mounts
 * and nats-server; simulated VMs (the guest plays no part here).
 */
import { randomUUID } from 'node:crypto';
import { existsSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createInbox } from '@nats-io/transport-node';
import { decode, encode } from '../../src/bus/codec.ts';
import { request } from '../../src/bus/rpc.ts';
import { subjects } from '../../src/bus/subjects.ts';
import { Snapshots } from '../../src/bus/snapshots.ts';
import { runRetention } from '../../src/bus/retention.ts';
import { testNode, type TestNode } from '../helpers/node.ts';
import { waitFor } from '../helpers/wait.ts';

let n: TestNode;
let snaps: Snapshots;
const ids: string[] = [];
beforeAll(async () => {
  n = await testNode({ faults: true, simulate: true });
  snaps = await Snapshots.open(n.nc, n.node);
});
afterAll(async () => {
  await n?.cleanup();
});
afterEach(async () => {
  await n.expectNothingLeft(ids);
});

const state = (id: string) => n.call<{ state: string }>('state', { id }).then((s) => s.state);
const snapshotIds = async () => (await snaps.all()).map((s) => s.taskId);
const listed = async () => (await n.call<{ tasks: { id: string }[] }>('list', {})).tasks.map((t) => t.id);

/** Send a Task API request with a reply inbox of its own, and collect every answer that arrives there. */
function rawRequest(verb: 'wait', body: Record<string, unknown>) {
  const inbox = createInbox();
  const answers: { ok: boolean; error?: { code: string; message: string } }[] = [];
  const sub = n.nc.subscribe(inbox, {
    callback: (_e, m) => {
      answers.push(decode(m.data) as (typeof answers)[number]);
    },
  });
  n.nc.publish(subjects.task(n.node, verb), encode(body), { reply: inbox });
  return { answers, close: () => sub.unsubscribe() };
}

describe('a wait held while its create fails', () => {
  it('gets the create failure at once, exactly once; the task is gone', async () => {
    const id = `wf-${randomUUID().slice(0, 8)}`;
    ids.push(id);
    const b = n.bundle(id, { args: ['sleep', '600'], emptyRootfs: true });
    // The rootfs mount hangs until the mount worker is killed: the create is held in `mounting`.
    await n.fault('mount', 'mountRootfs', 'hang');
    const created = n.call('create', {
      id,
      bundle: b,
      rootfs: [{ type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] }],
    });
    created.catch(() => {}); // asserted below
    await waitFor(() => state(id).catch(() => ''), {
      until: (s) => s === 'mounting',
      what: 'the create held in mounting',
    });

    const w = rawRequest('wait', { id, timeoutMs: 0 });
    // The wait is held: a later request on the same connection is answered first.
    expect(await state(id)).toBe('mounting');
    expect(w.answers).toEqual([]);

    const { pid } = await request<{ pid: number }>(n.nc, subjects.worker(n.node, 'mount', '__ping'), {}, 5_000);
    process.kill(pid, 'SIGKILL');
    const e = await created.then(
      () => null,
      (x: unknown) => x as { code: string },
    );
    expect(e).toMatchObject({ code: 'Unavailable' });
    await waitFor(() => w.answers.length, { timeoutMs: 10_000, what: 'the held wait answered' });
    expect(w.answers[0]).toMatchObject({ ok: false, error: { code: 'Unavailable' } });
    // Gone, and nothing more arrives for the wait (a later round trip to the agent is answered first).
    await expect(state(id)).rejects.toMatchObject({ code: 'NotFound' });
    expect(w.answers).toHaveLength(1);
    w.close();
  });

  it('a wait sent once the failed task is gone is NotFound', async () => {
    const id = `wg-${randomUUID().slice(0, 8)}`;
    ids.push(id);
    const b = n.bundle(id, { args: ['sleep', '600'], emptyRootfs: true });
    const bad = [
      { type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] },
      { type: 'nosuchfs', source: 'none', options: [] },
    ];
    await expect(n.call('create', { id, bundle: b, rootfs: bad })).rejects.toMatchObject({ code: 'InvalidArgument' });
    await expect(n.call('wait', { id, timeoutMs: 0 }, 10_000)).rejects.toMatchObject({ code: 'NotFound' });
  });
});

describe('snapshots of deleted tasks', () => {
  it('a recovered task deleted: its snapshot goes; once its history is purged, no restart brings it back', async () => {
    const id = `sd-${randomUUID().slice(0, 8)}`;
    ids.push(id);
    await n.call('create', { id, bundle: n.bundle(id, { args: ['sleep', '600'] }) });
    await waitFor(snapshotIds, { until: (s) => s.includes(id), what: `a snapshot of ${id}`, timeoutMs: 30_000 });
    await n.restartAgent(); // SIGKILL, then a new agent recovers the task
    expect(await state(id)).toBe('created');
    await n.call('delete', { id });
    await waitFor(snapshotIds, { until: (s) => !s.includes(id), what: `${id}'s snapshot removed`, timeoutMs: 30_000 });
    expect(await snapshotIds()).not.toContain(id);

    await runRetention(n.nc, { retentionMs: 0, node: n.node });
    await n.restartAgent();
    expect(await listed()).not.toContain(id);
    await expect(state(id)).rejects.toMatchObject({ code: 'NotFound' });
  });

  it('a snapshot whose records are gone rebuilds nothing and is removed when the agent starts', async () => {
    const id = `ss-${randomUUID().slice(0, 8)}`;
    ids.push(id);
    await n.call('create', { id, bundle: n.bundle(id, { args: ['sleep', '600'] }) });
    await waitFor(snapshotIds, { until: (s) => s.includes(id), what: `a snapshot of ${id}`, timeoutMs: 30_000 });
    const stale = (await snaps.all()).find((s) => s.taskId === id)!;
    await n.call('delete', { id });
    await waitFor(snapshotIds, { until: (s) => !s.includes(id), what: `${id}'s snapshot removed`, timeoutMs: 30_000 });
    await runRetention(n.nc, { retentionMs: 0, node: n.node });
    await snaps.save(stale); // as an older agent left it: a snapshot of a task whose history is purged

    await n.restartAgent();
    expect(await listed()).not.toContain(id);
    expect(await snapshotIds()).not.toContain(id);
  });

  it('an id with a dot gets its snapshot (and loses it on delete)', async () => {
    const id = `dot.${randomUUID().slice(0, 8)}`;
    ids.push(id);
    await n.call('create', { id, bundle: n.bundle(id, { args: ['sleep', '600'] }) });
    await waitFor(snapshotIds, { until: (s) => s.includes(id), what: `a snapshot of ${id}`, timeoutMs: 30_000 });
    expect(await snapshotIds()).toContain(id);
    await n.restartAgent();
    expect(await state(id)).toBe('created');
    await n.call('delete', { id });
    await waitFor(snapshotIds, { until: (s) => !s.includes(id), what: `${id}'s snapshot removed`, timeoutMs: 30_000 });
    expect(await snapshotIds()).not.toContain(id);
  });
});

describe('a bundle that is a symlink', () => {
  it('takes rootfs mounts: they go onto the resolved path, and go again on delete', async () => {
    const id = `sl-${randomUUID().slice(0, 8)}`;
    ids.push(id);
    const real = n.bundle(`${id}-real`, { args: ['sleep', '600'], emptyRootfs: true });
    const link = join(n.bundles, id);
    symlinkSync(real, link);
    const rootfs = [{ type: 'tmpfs', source: 'tmpfs', options: ['size=8m'] }];
    await n.call('create', { id, bundle: link, rootfs });
    expect(n.leftovers().mounts).toContain(join(real, 'rootfs'));
    await n.call('delete', { id });
    await n.expectNothingLeft([id]);
    expect(existsSync(join(real, 'rootfs'))).toBe(true); // the bundle's own dir stays
  });
});

describe('simulated VMs of a hypervisor worker that is SIGKILLed', () => {
  // Found by the soak (`npm run soak -- --ops 150 --seed 42`): the worker killed during a kill took its
  // simulated VMs with it and reported no VM death, so later kills failed "sandbox has no VM", the task
  // stayed running and its delete was refused, its rootfs mount left behind.
  it('are reported dead by its successor: the task exits 255 and deletes, nothing left', async () => {
    const id = `hk-${randomUUID().slice(0, 8)}`;
    ids.push(id);
    const b = n.bundle(id, { args: ['sleep', '600'], emptyRootfs: true });
    await n.call('create', { id, bundle: b });
    await n.call('start', { id });
    await n.fault('hypervisor', 'signal', 'crash'); // the worker dies as the kill reaches it
    await expect(n.call('kill', { id, signal: 9 })).rejects.toMatchObject({ code: 'Unavailable' });
    expect(await n.call('wait', { id })).toMatchObject({ exitStatus: 255 });
    await waitFor(() => state(id), { until: (s) => s === 'stopped', what: `${id} stopped after its VM died` });
    await n.call('delete', { id });
  });
});
