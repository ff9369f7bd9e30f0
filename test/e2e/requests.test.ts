/**
 * Repeating a Task API request (docs/api.md, "Repeating a request"): a request whose reply was lost
 * (its NATS server died, the caller reconnected) is sent again with the same `requestId`; the agent
 * joins it to the first or answers with the first answer, and does the work once. Real agent, real
 * workers, real QEMU guests; the agent is also SIGKILLed mid-create to show the key survives it.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { encode } from '../../src/bus/codec.ts';
import { subjects } from '../../src/bus/subjects.ts';
import { readRecords } from '../../src/bus/eventlog-reader.ts';
import { testNode, type TestNode } from '../helpers/node.ts';
import { waitFor } from '../helpers/wait.ts';

let n: TestNode;
const ids: string[] = [];
beforeAll(async () => {
  n = await testNode({ faults: true });
});
afterAll(async () => {
  await n?.cleanup();
});
afterEach(async () => {
  await n.expectNothingLeft(ids);
});

const kinds = async (id: string) => (await readRecords(n.nc, { node: n.node, sandbox: id })).map((r) => r.kind);
const count = (xs: string[], k: string) => xs.filter((x) => x === k).length;

/** Publish a request whose reply nobody hears (as when the caller's server died). */
function lostReply(verb: 'create' | 'start' | 'kill' | 'delete', body: Record<string, unknown>) {
  n.nc.publish(subjects.task(n.node, verb), encode(body), { reply: `_INBOX.lost.${randomUUID()}` });
}

describe('a repeated request is done once', () => {
  it(
    'create, start, kill and delete repeated with their requestIds: ' +
      'one sandbox, the first answers, each fact once',
    async () => {
      const id = 'rq1';
      ids.push(id);
      const b = n.bundle(id, { args: ['sleep', '600'] });
      const rq = { create: randomUUID(), start: randomUUID(), kill: randomUUID(), delete: randomUUID() };

      // Two copies at once (the second sent once the guest boots) and a third after the answer.
      const first = n.call<{ pid: number }>('create', { id, bundle: b, requestId: rq.create });
      first.catch(() => {}); // awaited below
      await waitFor(() => n.call<{ state: string }>('state', { id }, 5000).then((s) => s.state, String), {
        until: (s) => s === 'booting',
        timeoutMs: 60_000,
        intervalMs: 20,
        what: `${id} booting`,
      });
      const [a, c] = await Promise.all([
        first,
        n.call<{ pid: number }>('create', { id, bundle: b, requestId: rq.create }),
      ]);
      expect(a.pid).toBeGreaterThan(0);
      expect(c).toEqual(a);
      expect(await n.call('create', { id, bundle: b, requestId: rq.create })).toEqual(a);
      // Another requestId is another request: containerd's AlreadyExists.
      await expect(n.call('create', { id, bundle: b })).rejects.toMatchObject({ code: 'AlreadyExists' });

      // The first start's reply is lost; its repeat joins it (or gets its answer) instead of FailedPrecondition.
      lostReply('start', { id, requestId: rq.start });
      expect(await n.call('start', { id, requestId: rq.start })).toEqual({ pid: a.pid });
      expect(await n.call('start', { id, requestId: rq.start })).toEqual({ pid: a.pid });
      await expect(n.call('start', { id })).rejects.toMatchObject({ code: 'FailedPrecondition' });

      lostReply('kill', { id, signal: 'SIGKILL', requestId: rq.kill });
      await n.call('kill', { id, signal: 'SIGKILL', requestId: rq.kill });
      expect(await n.call('wait', { id })).toMatchObject({ exitStatus: 137 });

      lostReply('delete', { id, requestId: rq.delete });
      const d1 = await n.call('delete', { id, requestId: rq.delete });
      expect(d1).toMatchObject({ exitStatus: 137 });
      expect(await n.call('delete', { id, requestId: rq.delete })).toEqual(d1);
      await expect(n.call('delete', { id })).rejects.toMatchObject({ code: 'NotFound' });

      const ks = await kinds(id);
      for (const k of ['created', 'started', 'exited', 'deleted']) expect(count(ks, k), k).toBe(1);
    },
  );

  it('a failed create repeated gets the same failure, and nothing is done twice', async () => {
    const id = 'rq2';
    ids.push(id);
    const b = n.bundle(id, { args: ['true'] });
    await n.fault('hypervisor', 'boot', 'fail');
    const requestId = randomUUID();
    const first = await n.call('create', { id, bundle: b, requestId }).catch((e: unknown) => e);
    expect(first).toMatchObject({ code: 'Internal' });
    const again = await n.call('create', { id, bundle: b, requestId }).catch((e: unknown) => e);
    expect(again).toMatchObject({ code: (first as { code: string }).code, message: (first as Error).message });
    const ks = await kinds(id);
    expect(count(ks, 'rolledBack')).toBe(1);
    expect(ks.filter((k) => k === 'input').length).toBeGreaterThan(0);
  });

  it('the agent SIGKILLed after recording a create: the repeat after restart joins the recovered create', async () => {
    const id = 'rq3';
    ids.push(id);
    const b = n.bundle(id, { args: ['sleep', '600'] });
    const requestId = randomUUID();
    await n.restartAgent({ CORRAL_TEST_CRASH: 'before:boot' });
    const died = n.exited();
    lostReply('create', { id, bundle: b, requestId });
    await died;
    await n.restartAgent();
    const r = await n.call<{ pid: number }>('create', { id, bundle: b, requestId }, 120_000);
    expect(r.pid).toBeGreaterThan(0);
    expect(await n.call('create', { id, bundle: b, requestId })).toEqual(r);
    // Once more after another restart: the answer now comes from the log.
    await n.restartAgent();
    expect(await n.call('create', { id, bundle: b, requestId })).toEqual(r);
    await n.call('delete', { id });
    const ks = await waitFor(() => kinds(id), {
      until: (ks) => count(ks, 'deleted') === 1,
      timeoutMs: 10_000,
      intervalMs: 100,
      what: `the deleted fact of ${id} in the log`,
    });
    expect(count(ks, 'created')).toBe(1);
    expect(count(ks, 'deleted')).toBe(1);
  });

  // Found with the partition suite: a client's delete, re-sent (same requestId) to the agent back from a
  // SIGKILL that hit it mid-delete, was answered NotFound although that delete had been done.
  it('the agent SIGKILLed during a delete: the repeat after restart gets the delete exit info', async () => {
    const id = 'rq5';
    ids.push(id);
    const b = n.bundle(id, { args: ['sleep', '600'] });
    await n.call('create', { id, bundle: b });
    const requestId = randomUUID();
    await n.restartAgent({ CORRAL_TEST_CRASH: 'before:undo:stopVm' });
    const died = n.exited();
    lostReply('delete', { id, requestId });
    await died;
    await n.restartAgent(); // recovery finishes the teardown
    await waitFor(() => kinds(id), {
      until: (ks) => count(ks, 'deleted') === 1,
      timeoutMs: 60_000,
      intervalMs: 100,
      what: `the deleted fact of ${id} in the log`,
    });
    const r = await n.call<{ exitStatus: number }>('delete', { id, requestId });
    expect(r).toMatchObject({ exitStatus: expect.any(Number), exitedAt: expect.any(Number) }); // not NotFound
    await n.restartAgent(); // and from the log alone
    expect(await n.call('delete', { id, requestId })).toEqual(r);
    await expect(n.call('delete', { id })).rejects.toMatchObject({ code: 'NotFound' }); // a new request
  });

  // Seen in the partition suite after the fix above: the last undo's outcome stored, the agent killed
  // before its machine took it; the restarted agent's rebuild took it and ended the teardown there.
  it('SIGKILLed after the last undo was stored: the repeat gets the delete the rebuild finished', async () => {
    const id = 'rq6';
    ids.push(id);
    await n.call('create', { id, bundle: n.bundle(id, { args: ['sleep', '600'] }) });
    const requestId = randomUUID();
    await n.restartAgent({ CORRAL_TEST_CRASH: 'after:undo:removeTree' });
    const died = n.exited();
    lostReply('delete', { id, requestId });
    await died;
    await n.restartAgent();
    const r = await n.call<{ exitStatus: number }>('delete', { id, requestId });
    expect(r).toMatchObject({ exitStatus: expect.any(Number), exitedAt: expect.any(Number) });
    expect(count(await kinds(id), 'deleted')).toBe(1);
  });

  it('a malformed requestId is InvalidArgument', async () => {
    await expect(n.call('create', { id: 'rq4', bundle: '/nonexistent', requestId: 42 })).rejects.toMatchObject({
      code: 'InvalidArgument',
      message: expect.stringContaining('requestId'),
    });
    await expect(n.call('start', { id: 'rq4', requestId: '' })).rejects.toMatchObject({ code: 'InvalidArgument' });
  });
});
