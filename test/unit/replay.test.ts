/**
 * The replay engine against logs made here: the real machines run with fake effects, and a small
 * recorder writes what the agent writes (agent.ts, effects.ts): the `create` input before the actor
 * starts, each request before it is sent, each effect outcome before the machine sees it, a `state`
 * record per snapshot, the facts. Then: replay rebuilds the recorded states; a changed machine or a
 * tampered record is reported at its step; --until stops there; the text, JSON and HTML forms.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createActor, createMachine, fromPromise, setup } from 'xstate';
import type { Fact } from '../../src/domain/task.ts';
import { ensureError } from '../../src/errors.ts';
import {
  containerMachine,
  provideEffects,
  sandboxMachine,
  type Effects,
  type LifecycleEvent,
  type LifecycleMachine,
} from '../../src/machines/index.ts';
import { main, type Io } from '../../src/cli/main.ts';
import { parseSince } from '../../src/cli/commands/events.ts';
import { replay } from '../../src/replay/engine.ts';
import { rebuild } from '../../src/replay/rebuild.ts';
import { divergenceLine, entryLine, recordLine, stateText } from '../../src/replay/format.ts';
import { chartOf } from '../../src/replay/html-chart.ts';
import { replayHtml } from '../../src/replay/html.ts';
import type { EventRecord } from '../../src/bus/eventlog-reader.ts';
import { writeRecordsFile } from '../../src/replay/records.ts';
import { fakeEffects, request, until, type FakeOptions } from '../helpers/fake-effects.ts';

/** Runs one sandbox task and records its log as the agent would. The clock is a counter: +10 ms per record. */
function recorder(machine: LifecycleMachine, opts: FakeOptions = {}, id = 'sb1') {
  const records: EventRecord[] = [];
  let seq = 0;
  const append = (kind: string, data: Record<string, unknown>) =>
    records.push({
      seq: ++seq,
      subject: `corral.v1.evt.n1.${id}.${kind}`,
      node: 'n1',
      sandbox: id,
      kind,
      at: 1_000 + seq * 10,
      taskId: id,
      ...data,
    });
  const { fx } = fakeEffects(opts);
  const journal =
    <I, T>(name: (i: I) => string, f: (i: I, signal: AbortSignal) => Promise<T>) =>
    async (i: I, signal: AbortSignal): Promise<T> => {
      try {
        const output = await f(i, signal);
        append('input', { effect: name(i), ok: true, output });
        return output;
      } catch (e) {
        append('input', { effect: name(i), ok: false, error: ensureError(e).toWire() });
        throw e;
      }
    };
  const journaled: Effects = {
    validate: journal(() => 'validate', fx.validate),
    configure: journal(() => 'configure', fx.configure),
    runStep: journal((i) => i.step.kind, fx.runStep),
    startProcess: journal(() => 'startProcess', fx.startProcess),
    signal: journal(() => 'signal', fx.signal),
    act: journal((i) => `act:${i.act.op}`, fx.act),
    compensate: journal((c) => `undo:${c.kind}`, fx.compensate),
    sleep: journal(
      () => 'timer',
      async () => {},
    ),
  };
  const rid = 'r-create';
  append('input', {
    event: {
      type: 'create',
      rid,
      request: request(id),
      containerType: 'single_container',
      machine: 'sandbox',
      instance: 'i-1',
    },
  });
  const actor = createActor(provideEffects(machine, journaled), {
    input: { id, request: request(id), rid },
    inspect: (ev) => {
      if (ev.type === '@xstate.snapshot' && ev.actorRef === actor)
        append('state', { value: (ev.snapshot as unknown as { value: unknown }).value, event: ev.event.type });
    },
  });
  actor.on('fact', (f) => {
    const fact = f as Fact;
    append(fact.kind, fact.data);
  });
  actor.start();
  return {
    records,
    actor,
    send(event: LifecycleEvent) {
      append('input', { event });
      actor.send(event);
    },
  };
}

/** A whole life: create, start, the process exits 3, delete. */
async function happyLog() {
  const r = recorder(sandboxMachine);
  await until(r.actor, (s) => s === 'created');
  r.send({ type: 'start', rid: 'r-start', at: 2 });
  await until(r.actor, (s) => s.includes('running'));
  r.send({ type: 'exit', exitStatus: 3, exitedAt: 3 });
  r.send({ type: 'delete', rid: 'r-del', at: 4 });
  await until(r.actor, (s) => s === 'deleted');
  return r.records;
}

const seqOf = (records: EventRecord[], pred: (r: EventRecord) => boolean) => records.find(pred)!.seq;
const isState = (v: unknown) => (r: EventRecord) => r.kind === 'state' && JSON.stringify(r.value) === JSON.stringify(v);

/** sandboxMachine from its own config, with configuring's onDone sent to `created` instead of `advancing`. */
function alteredMachine(): LifecycleMachine {
  const cfg = sandboxMachine.config as { states: Record<string, { invoke: { onDone: object } }> };
  const configuring = cfg.states.configuring!;
  const states = {
    ...cfg.states,
    configuring: {
      ...configuring,
      invoke: { ...configuring.invoke, onDone: { ...configuring.invoke.onDone, target: 'created' } },
    },
  };
  return createMachine(
    { ...sandboxMachine.config, states } as never,
    sandboxMachine.implementations as never,
  ) as unknown as LifecycleMachine;
}

const stopAll = (r: Awaited<ReturnType<typeof replay>>) => r.tasks.forEach((t) => t.actor.stop());

describe('replay engine', () => {
  it('rebuilds every recorded state of a whole life, and times each effect', async () => {
    const records = await happyLog();
    const r = await replay(records);
    stopAll(r);
    expect(r.divergence).toBeUndefined();
    expect(r.lastSeq).toBe(records.length);
    expect(r.tasks).toHaveLength(1);
    expect(JSON.parse(r.tasks[0]!.visited.at(-1)!)).toBe('deleted');
    expect(r.tasks[0]!.visited.map(stateText)).toEqual([
      'validating',
      'configuring',
      'mounting',
      'preparingUser',
      'booting',
      'created',
      'starting',
      'running.idle',
      'stopping',
      'deleted',
    ]);
    const states = r.timeline.filter((e) => e.kind === 'state');
    expect(states).toHaveLength(records.filter((x) => x.kind === 'state').length);
    for (const e of states) expect(e.state).toBe(JSON.stringify((e.payload as { value: unknown }).value));
    expect(new Set(r.timeline.map((e) => e.lane))).toEqual(
      new Set(['sandbox', 'agent', 'worker:mount', 'worker:hypervisor']),
    );
    // Every effect of this log starts right after the record before it (the fake clock: 10 ms a record).
    for (const e of r.timeline.filter((x) => x.kind === 'effect'))
      expect(e.durationMs, `${e.label} at ${e.seq}`).toBe(10);
    expect(r.timeline.filter((e) => e.kind === 'fact').map((e) => e.label)).toEqual([
      'stepDone',
      'stepDone',
      'stepDone',
      'stepDone',
      'created',
      'started',
      'exited',
      'deleted',
    ]);
  });

  it('replays a rollback with a retried compensation (coordinator lane, timers)', async () => {
    const rec = recorder(sandboxMachine, { failStep: 'boot', failCompensation: { kind: 'removeUser', times: 2 } });
    await until(rec.actor, (s) => s.includes('failed') && s.includes('clean'));
    const r = await replay(rec.records);
    stopAll(r);
    expect(r.divergence).toBeUndefined();
    expect(r.timeline.filter((e) => e.lane === 'coordinator').map((e) => e.label)).toEqual(['timer ok', 'timer ok']);
    expect(r.timeline.filter((e) => e.ok === false).map((e) => e.label)).toEqual([
      'boot failed: Internal',
      'undo:removeUser failed: Unavailable',
      'undo:removeUser failed: Unavailable',
    ]);
    expect(r.timeline.find((e) => e.label === 'rolledBack')).toBeTruthy();
    expect(JSON.parse(r.tasks[0]!.visited.at(-1)!)).toEqual({ failed: 'clean' });
  });

  it(
    "an effect outcome journaled after its state was left (a kill's signal answered after the exit) " +
      'is no divergence',
    async () => {
      let answer!: () => void;
      const rec = recorder(sandboxMachine, { signalHeld: new Promise<void>((r) => (answer = r)) });
      await until(rec.actor, (s) => s === 'created');
      rec.send({ type: 'start', rid: 'r-start', at: 2 });
      await until(rec.actor, (s) => s.includes('running'));
      rec.send({ type: 'kill', rid: 'k1', signal: 9, all: true, at: 3 });
      await until(rec.actor, (s) => s.includes('signalling'));
      rec.send({ type: 'exit', exitStatus: 137, exitedAt: 4 }); // before the signal's own reply
      await until(rec.actor, (s) => s.includes('stopped'));
      answer(); // the worker's reply lands now, and is journaled (effects.ts journals every outcome)
      await vi.waitFor(() => expect(rec.records.some((x) => x.effect === 'signal')).toBe(true));
      expect(rec.records.findIndex((x) => x.effect === 'signal')).toBeGreaterThan(
        rec.records.findIndex((x) => (x.event as { type?: string } | undefined)?.type === 'exit'),
      );
      const r = await replay(rec.records);
      stopAll(r);
      expect(r.divergence).toBeUndefined();
      expect(JSON.parse(r.tasks[0]!.visited.at(-1)!)).toEqual({ stopped: 'clean' });
    },
  );

  it('a changed machine diverges at the first state that differs, naming its seq and task', async () => {
    const records = await happyLog();
    const r = await replay(records, { machines: { sandbox: alteredMachine(), container: containerMachine } });
    stopAll(r);
    const configured = seqOf(records, (x) => x.kind === 'input' && x.effect === 'configure');
    const expected = seqOf(records, (x) => x.seq > configured && x.kind === 'state');
    expect(r.divergence).toMatchObject({ seq: expected, taskId: 'sb1', expected: 'mounting', actual: 'created' });
    expect(r.lastSeq).toBe(expected); // stops at the first divergence
    expect(divergenceLine(r.divergence!)).toBe(
      `replay diverged at seq ${expected} (task sb1): recorded state mounting, rebuilt created`,
    );
  });

  it('records that shared a message share its seq: only the record that diverged is marked', async () => {
    const records = (await happyLog()).map((x) => ({ ...x }));
    // As the event log stores them now (src/bus/eventlog.ts Share): a state record in one message with the input
    // after it.
    const k = records.findIndex((x, i) => x.kind === 'state' && records[i + 1]?.kind === 'input');
    records[k]!.value = 'tampered';
    records[k + 1]!.seq = records[k]!.seq;
    const r = await replay(records, { stopOnDivergence: false });
    stopAll(r);
    expect(r.divergence).toMatchObject({ seq: records[k]!.seq });
    const marked = r.timeline.filter((e) => e.diverged);
    expect(marked).toHaveLength(1);
    expect(marked[0]).toMatchObject({ kind: 'state', seq: records[k]!.seq });
    expect(r.timeline.filter((e) => e.seq === records[k]!.seq).length).toBeGreaterThan(1);
    // The viewer marks that one entry, and opens at it.
    const html = replayHtml({ sandbox: 'sb1', node: 'n1', source: 'x.jsonl', result: r });
    expect(html.match(/class="ev [^"]*\bdiverged\b/g)).toHaveLength(1);
    const data = /<script type="application\/json" id="replay-data">(.*?)<\/script>/s.exec(html)![1]!;
    const entries = (JSON.parse(data) as { entries: { diverged: boolean; kind: string }[] }).entries;
    expect(entries.filter((e) => e.diverged).map((e) => e.kind)).toEqual(['state']);
  });

  it('a tampered state record diverges at that seq; an outcome nobody asked for too', async () => {
    const records = await happyLog();
    const k = records.findIndex(isState('created'));
    const tampered = records.map((x, i) => (i === k ? { ...x, value: 'running' } : x));
    const r = await replay(tampered);
    stopAll(r);
    expect(r.divergence).toMatchObject({ seq: records[k]!.seq, taskId: 'sb1', expected: 'running', actual: 'created' });

    const dropped = records.filter((x) => !(x.kind === 'input' && x.effect === 'configure'));
    const r2 = await replay(dropped);
    stopAll(r2);
    // the state after it: still configuring
    expect(r2.divergence?.seq).toBe(seqOf(records, (x) => x.kind === 'input' && x.effect === 'configure') + 1);
  });

  it('a state record appended after the next input (appends are chained per sandbox) is no divergence', async () => {
    // Live: the startProcess outcome and the exit both reach the log before the state record of the
    // first; replay has already fed the exit when it meets that record.
    const records = await happyLog();
    const running = records.findIndex(isState({ running: 'idle' }));
    const exit = records.findIndex((x) => (x.event as { type?: string } | undefined)?.type === 'exit');
    const moved = [
      ...records.slice(0, running),
      records[exit]!,
      records[running]!,
      ...records.slice(running + 1, exit),
      ...records.slice(exit + 1),
    ].map((x, i) => ({ ...x, seq: i + 1 }));
    const r = await replay(moved);
    stopAll(r);
    expect(r.divergence).toBeUndefined();
    expect(r.lastSeq).toBe(records.length);
    expect(r.timeline.filter((e) => e.kind === 'state').every((e) => e.ok)).toBe(true);
  });

  // Found by the partition suite: a node SIGKILLed mid-create, a controller wrote `lost` for the sandbox,
  // and the restarted agent counted it as one of the task's facts, so it skipped (never journaled) the
  // next fact its machine emitted, the `created` of the resumed create.
  it("counts only the machine's own facts as recorded: a controller's `lost` record is not one", async () => {
    const records = await happyLog();
    const cut = records.findIndex(isState('created'));
    const partial = records.slice(0, cut);
    const lost = { ...partial.at(-1)!, kind: 'lost', seq: partial.length + 1, reason: 'node lost', heartbeatAt: 1 };
    const own = partial.filter((x) => x.kind !== 'input' && x.kind !== 'state').length;
    const seen: number[] = [];
    const r = await rebuild([...partial, lost], { onTask: (t) => seen.push(t.recorded.facts) });
    r.tasks.forEach((t) => t.actor.stop());
    expect(own).toBeGreaterThan(0); // stepDone facts before `created`
    expect(seen).toEqual([own]);
  });

  // Found by the partition suite in CI: a rebuilt actor that threw while one of its effects waited left that
  // effect's gate open (a crashed actor never aborts its effects), and the outcome handed to it made rebuild
  // throw from inside xstate (`sub` before initialization): no divergence, and the suite hung for 15 minutes.
  it('an actor that crashes while an effect waits is a divergence naming the crash, not a hang', async () => {
    const crashing = setup({ actors: { validate: fromPromise(async () => 'unused') } }).createMachine({
      initial: 'validating',
      states: {
        validating: {
          invoke: { src: 'validate', onDone: 'done' },
          on: {
            boom: {
              actions: () => {
                throw new Error('boom in an action');
              },
            },
          },
        },
        done: {},
      },
    }) as unknown as LifecycleMachine;
    const rec = (seq: number, data: Partial<EventRecord>): EventRecord => ({
      seq,
      subject: `corral.v1.evt.n1.sb1.input`,
      node: 'n1',
      sandbox: 'sb1',
      kind: 'input',
      at: 1_000 + seq,
      taskId: 'sb1',
      ...data,
    });
    const records = [
      rec(1, { event: { type: 'create', rid: 'r', request: request('sb1'), machine: 'sandbox' } }),
      rec(2, { event: { type: 'boom' } }),
      rec(3, { effect: 'validate', ok: true, output: {} }),
    ];
    const r = await rebuild(records, { machines: { sandbox: crashing, container: crashing } });
    r.tasks.forEach((t) => t.actor.stop());
    expect(r.divergence).toMatchObject({ seq: 2, taskId: 'sb1' });
    expect(r.divergence!.message).toBe('the rebuilt sandbox crashed at seq 2: boom in an action');

    const late = await rebuild(records, {
      machines: { sandbox: crashing, container: crashing },
      stopOnDivergence: false,
    });
    late.tasks.forEach((t) => t.actor.stop());
    expect(late.lastSeq).toBe(3); // the outcome after the crash is fed, and found not taken
  });

  it('--until stops after that seq, in the state recorded there', async () => {
    const records = await happyLog();
    const at = seqOf(records, isState('created'));
    const r = await replay(records, { until: at });
    stopAll(r);
    expect(r.divergence).toBeUndefined();
    expect(r.lastSeq).toBe(at);
    expect(r.timeline.at(-1)!.seq).toBe(at);
    expect(r.tasks[0]!.actor.getSnapshot().value).toBe('created');
  });
});

describe('text forms', () => {
  it('parses --since as a sequence, a duration ago or an ISO date', () => {
    expect(parseSince('42')).toEqual({ sinceSeq: 42 });
    expect(parseSince('10m', 1_000_000)).toEqual({ sinceTime: 400_000 });
    expect(parseSince('2025-01-31T12:00:00Z')).toEqual({ sinceTime: Date.UTC(2025, 0, 31, 12) });
    expect(() => parseSince('yesterday')).toThrow(/--since "yesterday"/);
  });

  it('prints one line per record and per timeline entry', async () => {
    const records = await happyLog();
    const boot = records.find((x) => x.effect === 'boot')!;
    expect(recordLine(boot)).toMatch(
      /^\s+\d+ {2}1970-01-01 00:00:01\.\d{3} {2}n1\s+sb1\s+sb1\s+input\s+boot ok: pid=4242$/,
    );
    expect(recordLine(records.find(isState({ running: 'idle' }))!)).toMatch(
      /state\s+running\.idle ← xstate\.done\.actor\.startProcess$/,
    );
    expect(recordLine(records.find((x) => x.kind === 'exited')!)).toMatch(/exited\s+pid=4242 exitStatus=3 exitedAt=3$/);
    const r = await replay(records);
    stopAll(r);
    const line = entryLine(
      r.timeline.find((e) => e.label.startsWith('boot'))!,
      r.timeline[0]!.at,
    );
    expect(line).toMatch(/worker:hypervisor\s+effect boot ok: pid=4242 \(10 ms\) {2}→ created$/);
  });
});

describe('corral replay --file (no NATS)', () => {
  // Made in beforeAll: a run filtered to other tests (-t) runs neither hook, so it leaves nothing.
  let dir = '';
  beforeAll(() => void (dir = mkdtempSync(join(tmpdir(), 'corral-replay-'))));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const io = () => {
    const out: string[] = [],
      err: string[] = [];
    const i: Io = {
      env: { ...process.env, NATS_URL: 'nats://127.0.0.1:1' },
      out: (l) => out.push(l),
      err: (l) => err.push(l),
      stdout: () => {},
      stderr: () => {},
    };
    return { i, out, err };
  };

  it('exits 0 with the timeline, 1 naming the divergent seq, and refuses --step without a terminal', async () => {
    const records = await happyLog();
    const file = join(dir, 'sb1.jsonl');
    writeRecordsFile(file, records);
    const ok = io();
    expect(await main(['replay', 'sb1', '--file', file], ok.i)).toBe(0);
    expect(ok.out.join('\n')).toMatch(/effect boot ok: pid=4242/);
    expect(ok.out.at(-1)).toMatch(
      /^ok: \d+ inputs replayed up to seq \d+; \d+ rebuilt states equal the recorded ones$/,
    );

    const k = records.findIndex(isState('starting'));
    writeFileSync(file, records.map((x, i) => JSON.stringify(i === k ? { ...x, value: 'stopped' } : x)).join('\n'));
    const bad = io();
    expect(await main(['replay', 'sb1', '--file', file], bad.i)).toBe(1);
    expect(bad.err).toEqual([
      `corral: replay diverged at seq ${records[k]!.seq} (task sb1): recorded state stopped, rebuilt starting`,
    ]);

    const js = io();
    expect(await main(['replay', 'sb1', '--file', file, '--json'], js.i)).toBe(1);
    const j = JSON.parse(js.out[0]!) as {
      ok: boolean;
      divergence: { seq: number };
      tasks: { state: unknown }[];
      timeline: unknown[];
    };
    expect(j).toMatchObject({ ok: false, divergence: { seq: records[k]!.seq }, tasks: [{ state: 'starting' }] });

    await expect(main(['replay', 'sb1', '--file', file, '--step'], io().i)).rejects.toThrow(/stdin is not a TTY/);
    await expect(main(['replay', 'nope', '--file', file], io().i)).rejects.toMatchObject({ code: 'NotFound' });
  });
});

describe('the HTML page', () => {
  it('draws the chart from the machine definition, and a changed machine draws a changed chart', () => {
    const c = chartOf(sandboxMachine);
    expect(c.states.map((s) => s.key)).toEqual(Object.keys(sandboxMachine.root.states));
    expect(c.initial).toBe('validating');
    expect(c.states.find((s) => s.key === 'running')!.children).toEqual(['idle', 'acting', 'signalling']);
    expect(c.states.find((s) => s.key === 'advancing')!.transient).toBe(true);
    expect(c.edges).toContainEqual({ from: 'configuring', to: 'advancing', events: ['done: configure'] });
    const altered = chartOf(alteredMachine());
    expect(altered.edges).toContainEqual({ from: 'configuring', to: 'created', events: ['done: configure'] });
    expect(altered.edges.find((e) => e.from === 'configuring' && e.to === 'advancing')).toBeUndefined();
  });

  it('escapes every payload: </script> and markup in the log stay text', async () => {
    const records = await happyLog();
    const evil = '</script><script>window.pwned=1</script><img src=x onerror=alert(1)> & \u2028';
    const tainted = records.map((x) =>
      x.effect === 'boot'
        ? { ...x, output: { pid: 4242, note: evil } }
        : x.kind === 'created'
          ? { ...x, bundle: evil }
          : x,
    );
    const r = await replay(tainted);
    stopAll(r);
    const html = replayHtml({ sandbox: '<i>sb1</i>', node: 'n1', source: 'x.jsonl', result: r });
    expect(html.match(/<script/g)).toHaveLength(2);
    expect(html.match(/<\/script>/g)).toHaveLength(2);
    expect(html).not.toContain('<img');
    expect(html).not.toContain('<i>sb1');
    expect(html).toContain('&lt;i&gt;sb1');
    const data = /<script type="application\/json" id="replay-data">(.*?)<\/script>/s.exec(html)![1]!;
    const parsed = JSON.parse(data) as { entries: { payload: { note?: string } }[] };
    expect(parsed.entries.some((e) => e.payload?.note === evil)).toBe(true);
    expect(html).toMatch(/Content-Security-Policy" content="default-src 'none'/);
  });
});
