/**
 * NATS itself restarted in the middle of a create (issue 3, "What must hold"): the node's nats-server is
 * SIGKILLed and started again on the same port and store dir while a real sandbox boots. The agent and
 * its workers reconnect by themselves; the create completes or rolls back; no event is lost (the log
 * holds the sandbox's facts complete and in order, and replays to its recorded states); nothing leaks.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { replay } from '../../src/replay/engine.ts';
import { readRecords, type EventRecord } from '../../src/replay/records.ts';
import { CorralError } from '../../src/errors.ts';
import { eventually, NOTHING_LEFT, testNode, type TestNode } from '../helpers/node.ts';

let n: TestNode;
const ids: string[] = [];
beforeAll(async () => { n = await testNode(); });
afterAll(async () => { await n?.cleanup(); });
afterEach(async () => {
  await eventually(() => JSON.stringify(n.leftovers(ids)) === JSON.stringify(NOTHING_LEFT));
  expect(n.leftovers(ids)).toEqual(NOTHING_LEFT);
});

const FACTS = new Set(['created', 'started', 'exited', 'deleted', 'rolledBack']);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const since = (t: number) => Math.round(performance.now() - t);

/** `state` of a task, or undefined once it is gone (NotFound). Retries while NATS is coming back. */
async function stateOf(id: string): Promise<Record<string, unknown> | undefined> {
  for (let i = 0; ; i++) {
    try { return await n.call('state', { id }, 5000); } catch (e) {
      if (e instanceof CorralError && e.code === 'NotFound') return undefined;
      if (i > 20) throw e;
      await sleep(250);
    }
  }
}

async function waitForState(id: string, states: string[], ms = 60_000): Promise<string> {
  const until = Date.now() + ms;
  for (;;) {
    const s = await stateOf(id);
    const st = String(s?.state ?? 'gone');
    if (states.includes(st)) return st;
    if (Date.now() > until) throw new Error(`${id} is ${st}, not ${states.join('|')}, after ${ms} ms`);
    await sleep(20);
  }
}

/** The create's outcome as its caller sees it; a request lost with the server is an error, then `state` tells. */
async function createOutcome(p: Promise<unknown>, id: string): Promise<'created' | 'rolledBack'> {
  try { await p; return 'created'; } catch (e) {
    if (!(e instanceof CorralError) || !['Timeout', 'Unavailable', 'Internal'].includes(e.code)) throw e;
    const st = await waitForState(id, ['created', 'failed', 'gone'], 240_000);
    return st === 'created' ? 'created' : 'rolledBack';
  }
}

/** The sandbox's facts (in stream order) once its last one is in the log. */
async function factsOf(id: string, last: string): Promise<EventRecord[]> {
  let rs: EventRecord[] = [];
  await eventually(async () => { rs = await readRecords(n.nc, { node: n.node, sandbox: id }); return rs.some((r) => r.kind === last); }, 20_000);
  return rs;
}

describe('NATS itself restarted in the middle of a create', () => {
  it('while the guest boots: the create completes (or rolls back), the lifecycle goes on, no fact is lost, nothing leaks', async () => {
    const b = n.bundle('nrboot', { args: ['sleep', '600'] });
    const id = 'nrboot';
    ids.push(id);
    const t0 = performance.now();
    const create = n.call('create', { id, bundle: b }, 240_000);
    create.catch(() => {});
    await waitForState(id, ['booting']);
    const bootAt = since(t0);
    const { downMs } = await n.restartNats({ downMs: 300 });
    const outcome = await createOutcome(create, id);
    const createMs = since(t0);
    if (outcome === 'created') {
      await n.call('start', { id });
      await n.call('kill', { id, signal: 'SIGKILL' });
      expect(await n.call('wait', { id })).toMatchObject({ exitStatus: 137 });
      await n.call('delete', { id });
      expect(await stateOf(id)).toBeUndefined();
    } else {
      expect(await stateOf(id)).toBeUndefined();
    }
    const rs = await factsOf(id, outcome === 'created' ? 'deleted' : 'rolledBack');
    const facts = rs.filter((r) => FACTS.has(r.kind)).map((r) => r.kind);
    expect(facts).toEqual(outcome === 'created' ? ['created', 'started', 'exited', 'deleted'] : ['rolledBack']);
    // one create input, first; sequences strictly increasing (no record twice)
    expect(rs[0]).toMatchObject({ kind: 'input', event: { type: 'create' } });
    expect(rs.filter((r) => r.kind === 'input' && (r.event as { type?: string } | undefined)?.type === 'create')).toHaveLength(1);
    const r = await replay(rs);
    expect(r.divergence).toBeUndefined();
    console.log(`nats-restart(boot): restarted ${bootAt} ms into the create (down ${downMs} ms); create ${outcome} after ${createMs} ms; ${rs.length} records, replay ok`);
  });
});

describe('probe', () => {
  it('exit during outage', async () => {
    const b = n.bundle('nrexit', { args: ['sh', '-c', 'sleep 3; exit 7'] });
    const id = 'nrexit';
    ids.push(id);
    await n.call('create', { id, bundle: b });
    await n.call('start', { id });
    await sleep(1000);
    const { downMs } = await n.restartNats({ downMs: 4000 });
    let w: unknown;
    try { w = await n.call('wait', { id, timeoutMs: 20_000 }, 30_000); } catch (e) { w = e; }
    console.log('wait ->', w, downMs, await stateOf(id));
    await n.call('kill', { id, signal: 'SIGKILL' }).catch(() => {});
    await n.call('wait', { id }, 30_000).catch(() => {});
    await n.call('delete', { id }).catch((e) => console.log('delete', e));
    const rs = await readRecords(n.nc, { node: n.node, sandbox: id });
    console.log(rs.map((r) => `${r.seq} +${r.at - rs[0]!.at} ${r.kind} ${JSON.stringify(r.event ?? r.effect ?? r.value ?? '')}`.slice(0, 160)).join('\n'));
  }, 400_000);
});
