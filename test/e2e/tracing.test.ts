/**
 * Traces end to end (OpenTelemetry over OTLP/HTTP protobuf, to a receiver in this test): one `corral run`
 * is one trace, from the CLI's root span through the agent's Task API server spans and its create steps
 * to the workers' op spans and the guest's boot; records of the event log name that trace. An agent
 * SIGKILLed in the middle of a create is followed by a recovery span linked to the interrupted request.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readRecords } from '../../src/bus/eventlog-reader.ts';
import { replay } from '../../src/replay/engine.ts';
import { entryLine } from '../../src/replay/format.ts';
import { otlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../helpers/otlp/receiver.ts';
import { testNode, type TestNode } from '../helpers/node.ts';
import { waitFor } from '../helpers/wait.ts';

const SERVER = 2;

let rx: OtlpReceiver;
let otel: NodeJS.ProcessEnv;
beforeAll(async () => {
  rx = await otlpReceiver();
  // The agent and its workers export every 100 ms; a CLI exports when it exits.
  otel = { OTEL_EXPORTER_OTLP_ENDPOINT: rx.url, OTEL_BSP_SCHEDULE_DELAY: '100' };
});
afterAll(async () => {
  await rx?.close();
});

const inTrace = (traceId: string) => rx.spans.filter((s) => s.traceId === traceId);
const one = (spans: ReceivedSpan[], name: string, service?: string) => {
  const found = spans.filter((s) => s.name === name && (!service || s.service === service));
  expect(found.map((s) => `${s.service} ${s.name}`)).toEqual([`${found[0]?.service ?? service} ${name}`]);
  return found[0]!;
};
/** The first span `find` finds, once it has been received. */
const received = async (find: (s: ReceivedSpan) => boolean, what: string): Promise<ReceivedSpan> =>
  (await waitFor(() => rx.spans.find(find), { what }))!;
/** The CLI's root span of `corral <cmd>`, once the CLI has exported it. */
const cliRoot = (cmd: string) =>
  received((s) => s.service === 'corral-cli' && s.name === `corral ${cmd}` && !s.parentSpanId, `corral ${cmd}'s span`);

describe('a traced node', () => {
  let n: TestNode;
  beforeAll(async () => {
    n = await testNode({ env: otel });
  });
  afterAll(async () => {
    await n?.cleanup();
  });

  it('one trace spans corral run: CLI, Task API, create steps, worker ops, guest boot; records name it', async () => {
    const id = 'tr-run';
    const r = await n.cli(['run', '--bundle', n.bundle(id, { args: ['echo', 'traced'] }), '--rm', '--id', id], otel);
    expect(r).toMatchObject({ code: 0, stdout: 'traced\n' });
    const root = await cliRoot('run');
    // Wait until every span has its parent in the trace, up to the root, and the boot and start are in.
    const ancestry = (spans: ReceivedSpan[], s: ReceivedSpan): ReceivedSpan[] => {
      const parent = spans.find((p) => p.spanId === s.parentSpanId);
      return parent ? [parent, ...ancestry(spans, parent)] : [];
    };
    const spans = await waitFor(() => inTrace(root.traceId), {
      until: (ss) =>
        ['task.create', 'task.start', 'vm.boot', 'worker.hypervisor.startProcess'].every((x) =>
          ss.some((s) => s.name === x),
        ) && ss.every((s) => s === root || ancestry(ss, s).at(-1) === root),
      what: () => `the whole trace of corral run: ${inTrace(root.traceId).map((s) => s.name)}`,
      timeoutMs: 10_000,
    });
    expect(new Set(spans.map((s) => s.service))).toEqual(
      new Set(['corral-cli', 'corral-agent', 'corral-worker-mount', 'corral-worker-hypervisor']),
    );
    const create = one(spans, 'task.create', 'corral-agent');
    const start = one(spans, 'task.start', 'corral-agent');
    for (const s of [create, start]) expect(s).toMatchObject({ kind: SERVER, parentSpanId: root.spanId });
    // The create steps are children of task.create; startProcess of task.start.
    const steps = spans.filter((s) => s.name.startsWith('effect.'));
    const stepsOf = (parent: ReceivedSpan) => steps.filter((s) => s.parentSpanId === parent.spanId).map((s) => s.name);
    expect(stepsOf(create)).toEqual(expect.arrayContaining(['effect.validate', 'effect.configure', 'effect.boot']));
    expect(stepsOf(start)).toEqual(['effect.startProcess']);
    for (const s of steps) expect([create.spanId, start.spanId]).toContain(s.parentSpanId);
    expect(new Set(steps.map((s) => s.service))).toEqual(new Set(['corral-agent']));
    // Each worker op is a server span of its worker, child of the step that sent it.
    const mountOps = spans.filter((s) => s.name.startsWith('worker.mount.'));
    expect(mountOps.length).toBeGreaterThan(0);
    for (const op of mountOps) {
      expect(op).toMatchObject({ service: 'corral-worker-mount', kind: SERVER });
      expect(steps.find((s) => s.spanId === op.parentSpanId)?.name).toBe(`effect.${op.name.split('.')[2]}`);
    }
    const bootOp = one(spans, 'worker.hypervisor.boot', 'corral-worker-hypervisor');
    expect(bootOp.parentSpanId).toBe(one(spans, 'effect.boot').spanId);
    const boot = one(spans, 'vm.boot', 'corral-worker-hypervisor');
    expect(boot.parentSpanId).toBe(bootOp.spanId);
    expect(boot.events.map((e) => e.name)).toContain('guest.ready');
    expect(boot.attributes).toMatchObject({ 'corral.sandbox_id': id });
    expect(spans.every((s) => s.status.code !== 2)).toBe(true);

    // The event log: the create's input names its server span; records appended in the trace carry its id.
    const recs = await readRecords(n.nc, { node: n.node, sandbox: id });
    const input = recs.find((x) => x.kind === 'input' && (x.event as { type?: string }).type === 'create')!;
    expect(input).toMatchObject({ traceId: root.traceId, trace: `00-${root.traceId}-${create.spanId}-01` });
    expect(recs.find((x) => x.kind === 'input' && x.effect === 'boot')?.traceId).toBe(root.traceId);
    // `corral events` shows it on each record's line; `corral replay` names it per input.
    const ev = await n.cli(['events', '--sandbox', id], otel);
    expect(ev.stdout.split('\n').find((l) => / input .* create /.test(l))).toContain(`trace=${root.traceId}`);
    const rp = await replay(recs);
    for (const t of rp.tasks) t.actor.stop();
    const created = rp.timeline.find((e) => e.kind === 'create')!;
    expect(entryLine(created, created.at)).toContain(`trace=${root.traceId}`);
  });
});

describe('a traced node whose agent is killed during a create', () => {
  let n: TestNode;
  beforeAll(async () => {
    n = await testNode({ faults: true, simulate: true, env: otel });
  });
  afterAll(async () => {
    await n?.cleanup();
  });

  it('the recovery span links to the interrupted create, and the create goes on in it', async () => {
    const id = 'tr-crash';
    const b = n.bundle(id, { args: ['sleep', '600'], emptyRootfs: true });
    await n.restartAgent({ CORRAL_TEST_CRASH: 'during:mountRootfs' });
    const died = n.exited();
    // Its request dies with the agent: the CLI gives up after 3 s (its span is exported then).
    const cli = n.cli(['create', id, '--bundle', b, '--rootfs', 'tmpfs:tmpfs:size=4m', '--timeout', '3s'], otel);
    await died;
    await n.restartAgent();
    expect((await cli).code).not.toBe(0);
    const root = await cliRoot('create');
    const recs = await readRecords(n.nc, { node: n.node, sandbox: id });
    const input = recs.find((x) => x.kind === 'input' && (x.event as { type?: string }).type === 'create')!;
    const [, traceId, spanId] = String(input.trace).split('-');
    expect(traceId).toBe(root.traceId);

    const recovery = await received(
      (s) => s.name === 'recovery' && s.links.some((l) => l.attributes['corral.task_id'] === id),
      'the recovery span linked to the create',
    );
    expect(recovery.service).toBe('corral-agent');
    expect(recovery.parentSpanId).toBe('');
    expect(recovery.links).toEqual([
      { traceId: root.traceId, spanId, attributes: { 'corral.task_id': id, 'corral.request': 'create' } },
    ]);
    expect(recovery.attributes['corral.resumed']).toEqual([`${id}:mountRootfs`]);
    // The op in flight is sent again (same opId) from the recovery's trace; the create converges.
    const resumed = await received(
      (s) => s.traceId === recovery.traceId && s.name === 'worker.mount.mountRootfs',
      'the re-issued mountRootfs in the recovery trace',
    );
    const step = inTrace(recovery.traceId).find((s) => s.spanId === resumed.parentSpanId);
    expect(step).toMatchObject({ name: 'effect.mountRootfs', parentSpanId: recovery.spanId });
    await waitFor(() => n.call<{ state: string }>('state', { id }), {
      until: (s) => s.state === 'created',
      what: `${id} created`,
      timeoutMs: 30_000,
    });
    await n.call('delete', { id });
    await n.expectNothingLeft([id]);
  });
});
