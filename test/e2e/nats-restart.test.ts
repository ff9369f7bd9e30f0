/**
 * NATS itself restarted in the middle of a create (issue 3, "What must hold"): the node's nats-server is
 * SIGKILLed and started again on the same port and store dir while a real sandbox boots. The agent and
 * its workers reconnect by themselves; the create completes and its caller gets the reply; no event is lost (the log
 * holds the sandbox's facts complete and in order, and replays to its recorded states); nothing leaks.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { replay } from '../../src/replay/engine.ts';
import { readRecords, type EventRecord } from '../../src/bus/eventlog-reader.ts';
import { CorralError } from '../../src/errors.ts';
import { testNode, type TestNode } from '../helpers/node.ts';
import { waitFor } from '../helpers/wait.ts';

let n: TestNode;
const ids: string[] = [];
beforeAll(async () => {
  n = await testNode();
});
afterAll(async () => {
  await n?.cleanup();
});
afterEach(async () => {
  await n.expectNothingLeft(ids);
});

const FACTS = new Set(['created', 'started', 'exited', 'deleted', 'rolledBack']); // a rollback would show
const since = (t: number) => Math.round(performance.now() - t);

/** `state` of a task, or `gone` once it is NotFound. Asks again while NATS is coming back (other errors). */
async function stateOf(id: string): Promise<Record<string, unknown> | 'gone'> {
  const r = await waitFor(
    () =>
      n.call('state', { id }, 5000).then(
        (s) => ({ s }),
        (e: unknown) => {
          if (e instanceof CorralError && e.code === 'NotFound') return { s: 'gone' as const };
          throw e;
        },
      ),
    { ignoreErrors: true, timeoutMs: 60_000, intervalMs: 250, what: `an answer to the state of ${id}` },
  );
  return r.s;
}

async function waitForState(id: string, states: string[], ms = 60_000): Promise<string> {
  const st = (s: Awaited<ReturnType<typeof stateOf>>) => (s === 'gone' ? 'gone' : String(s.state));
  return st(
    await waitFor(() => stateOf(id), {
      until: (s) => states.includes(st(s)),
      timeoutMs: ms,
      intervalMs: 20,
      what: `${id} to be ${states.join('|')}`,
    }),
  );
}

/**
 * After the create: run the sandbox through its lifecycle (start, SIGKILL, wait, delete) and check the
 * log: the facts complete and in order, one create input, first, and a replay of the records that
 * gives back the recorded states (a lost input would make it diverge).
 */
async function finishAndCheck(id: string): Promise<EventRecord[]> {
  await n.call('start', { id });
  await n.call('kill', { id, signal: 'SIGKILL' });
  expect(await n.call('wait', { id })).toMatchObject({ exitStatus: 137 });
  await n.call('delete', { id });
  expect(await stateOf(id)).toBe('gone');
  const rs = await factsOf(id, 'deleted');
  expect(rs.filter((r) => FACTS.has(r.kind)).map((r) => r.kind)).toEqual(['created', 'started', 'exited', 'deleted']);
  expect(rs[0]).toMatchObject({ kind: 'input', event: { type: 'create' } });
  expect(
    rs.filter((r) => r.kind === 'input' && (r.event as { type?: string } | undefined)?.type === 'create'),
  ).toHaveLength(1);
  // No record twice (records that shared a message share its sequence, so they are told apart whole).
  const whole = rs.map((r) => JSON.stringify(r));
  expect(new Set(whole).size).toBe(whole.length);
  expect((await replay(rs)).divergence).toBeUndefined();
  return rs;
}

/** The sandbox's facts (in stream order) once its last one is in the log. */
async function factsOf(id: string, last: string): Promise<EventRecord[]> {
  return waitFor(() => readRecords(n.nc, { node: n.node, sandbox: id }), {
    until: (rs) => rs.some((r) => r.kind === last),
    timeoutMs: 20_000,
    intervalMs: 100,
    what: `the fact ${last} of ${id} in the log`,
  });
}

describe('NATS itself restarted in the middle of a create', () => {
  // Down briefly while the guest boots, and down past the end of the boot: the worker's boot reply and
  // the agent's create reply are lost with the server, and asked for again (same opId, same requestId).
  it.each([
    { tag: 'boot', downMs: 300, what: 'while the guest boots (down 0.3 s)' },
    { tag: 'boot, long', downMs: 4000, what: 'down past the end of the boot (4 s)' },
  ])(
    '$what: the create gets its own reply, the lifecycle goes on, no fact is lost, nothing leaks',
    async ({ tag, downMs: down }) => {
      const id = tag === 'boot' ? 'nrboot' : 'nrlong';
      ids.push(id);
      const b = n.bundle(id, { args: ['sleep', '600'] });
      const t0 = performance.now();
      const create = n.call('create', { id, bundle: b }, 240_000);
      create.catch(() => {});
      await waitForState(id, ['booting']);
      const at = since(t0);
      const { downMs } = await n.restartNats({ downMs: down });
      expect(await create).toMatchObject({ pid: expect.any(Number) });
      const createMs = since(t0);
      // Before rpc.ts re-sent idempotent requests on reconnect, the long case waited out the boot deadline
      // (120 s) and rolled back.
      expect(createMs).toBeLessThan(60_000);
      const rs = await finishAndCheck(id);
      console.log(
        `nats-restart(${tag}): NATS SIGKILLed ${at} ms into the create, back after ${downMs} ms; ` +
          `create created after ${createMs} ms; ${rs.length} records, replay ok`,
      );
    },
  );

  it('a create sent while NATS is down is sent again on reconnect (same requestId) and is done once', async () => {
    const id = 'nrlost';
    ids.push(id);
    const b = n.bundle(id, { args: ['sleep', '600'] });
    const t0 = performance.now();
    let first!: Promise<{ pid: number }>;
    await n.restartNats({
      downMs: 500,
      whileDown: () => {
        first = n.call<{ pid: number }>('create', { id, bundle: b }, 60_000);
        first.catch(() => {});
      },
    });
    expect((await first).pid).toBeGreaterThan(0);
    const createMs = since(t0);
    const rs = await finishAndCheck(id);
    console.log(
      `nats-restart(request lost): create created after ${createMs} ms ` +
        `(the client sent it again after the reconnect); ${rs.length} records, replay ok`,
    );
  });

  // Worker facts are appended with acknowledgement (retried across the outage) and consumed through a
  // durable consumer: an exit that happens while NATS is down arrives when it is back.
  it('a process exit while NATS is down reaches the agent and the log', async () => {
    const id = 'nrexit';
    ids.push(id);
    await n.call('create', { id, bundle: n.bundle(id, { args: ['sh', '-c', 'sleep 2; exit 7'] }) });
    await n.call('start', { id });
    await n.restartNats({ downMs: 4000 });
    // Right after the restart the agent may not have resubscribed yet: the client asks again (rpc.ts,
    // "no responders" grace).
    const waited = await n.call('wait', { id }, 60_000);
    expect(waited).toMatchObject({ exitStatus: 7 });
    await n.call('delete', { id });
    const rs = await factsOf(id, 'deleted');
    expect(rs.filter((r) => FACTS.has(r.kind)).map((r) => r.kind)).toEqual(['created', 'started', 'exited', 'deleted']);
    // The worker's exit fact is stored (it may be stored twice across the outage; the agent ignores the second).
    expect(rs.filter((r) => r.kind === 'worker').map((r) => (r.event as { exitStatus?: number }).exitStatus)).toContain(
      7,
    );
    expect((await replay(rs)).divergence).toBeUndefined();
  });
});
