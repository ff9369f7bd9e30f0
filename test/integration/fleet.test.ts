/**
 * The fleet on a real nats-server (no QEMU): simulated nodes are AgentRegistration instances with
 * heartbeats plus a fake Task API each (createInline records the create and reserves nothing: the
 * controller reserved), served by two controllers in the queue group corral-fleet. Placement by
 * policy, cordon, refusals, node loss within the bound, the CLI, and a scale test with 100 simulated
 * nodes and 10,000 placements.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats } from '../../src/bus/connection.ts';
import { decode, encode } from '../../src/bus/codec.ts';
import { ensureEventStream } from '../../src/bus/eventlog.ts';
import { request } from '../../src/bus/rpc.ts';
import { subjects } from '../../src/bus/subjects.ts';
import { ensureError, err, fromWire } from '../../src/errors.ts';
import { FleetController } from '../../src/fleet/controller.ts';
import type { FleetCreateResult, NodeCaller } from '../../src/fleet/node-create.ts';
import type { NodeLostEvent } from '../../src/fleet/liveness.ts';
import type { Policy } from '../../src/fleet/placement.ts';
import { AgentRegistration } from '../../src/fleet/agent-registration.ts';
import { NodeRegistry } from '../../src/fleet/registry.ts';
import type { NodeEntry, Resources } from '../../src/fleet/types.ts';
import { main, type Io } from '../../src/cli/main.ts';
import { readRecords } from '../../src/bus/eventlog-reader.ts';
import { natsServer, type TestNats } from '../helpers/nats.ts';
import { simNode as makeSimNode, type SimNode } from '../helpers/sim-nodes.ts';
import { waitFor, within } from '../helpers/wait.ts';

const REPO = join(import.meta.dirname, '../..');
let nats: TestNats;
let registry: NodeRegistry;
beforeAll(async () => {
  nats = await natsServer();
  registry = await NodeRegistry.open(nats.nc);
});
afterAll(async () => {
  await nats?.cleanup();
});

/** A minimal config.json as a map (Kata defaults size it: 1 vCPU, 2048 MiB). */
const spec = (o: { resources?: Record<string, unknown> } = {}) => ({
  ociVersion: '1.0.2',
  process: { args: ['/bin/true'], cwd: '/', user: { uid: 0, gid: 0 } },
  root: { path: 'rootfs' },
  linux: { resources: o.resources ?? {} },
});
const create = (id: string, o: Record<string, unknown> = {}) => ({ id, spec: spec(), ...o });

/** A simulated node whose registry entry and Task API go when the test ends. */
async function simNode(...a: Parameters<typeof makeSimNode>): Promise<SimNode> {
  const n = await makeSimNode(...a);
  cleanups.push(() => n.stop());
  return n;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => {});
  for await (const k of await registry.kv.keys()) await registry.kv.purge(k);
});

/** Each controller's connection (see {@link livenessSettled}). */
const connOf = new Map<FleetController, NatsConnection>();

/** Two controllers in the queue group, each on its own connection. */
async function controllers(
  o: { policy?: Policy; boundMs?: number; callNode?: NodeCaller; nodeTimeoutMs?: number; count?: number } = {},
): Promise<FleetController[]> {
  const out: FleetController[] = [];
  for (let i = 0; i < (o.count ?? 2); i++) {
    const nc = await connectNats(nats.url, `fleet-test-${i}`);
    const reg = await NodeRegistry.open(nc);
    const c = await FleetController.start({
      nc,
      registry: reg,
      policy: o.policy,
      name: `c${i}`,
      liveness: { boundMs: o.boundMs ?? 3000 },
      callNode: o.callNode,
      nodeTimeoutMs: o.nodeTimeoutMs,
    });
    connOf.set(c, nc);
    cleanups.push(async () => {
      connOf.delete(c);
      await c.stop();
      await nc.close();
    });
    out.push(c);
  }
  return out;
}

const fleetCreate = (body: Record<string, unknown>, timeoutMs = 30_000) =>
  request<FleetCreateResult>(nats.nc, subjects.fleetCreate(), body, timeoutMs);
const entryOf = async (node: string): Promise<NodeEntry> => (await registry.get(node))!.entry;
const counts = (nodes: SimNode[]) => Object.fromEntries(nodes.map((n) => [n.name, n.created.size]));
const CAP = (sandboxes: number): Resources => ({ vcpus: sandboxes, memoryMiB: sandboxes * 2048, sandboxes });

/** Resolves once every controller's copy of the registry shows `node` in `state`. */
async function seen(cs: FleetController[], node: string, state: string) {
  await waitFor(() => cs.map((c) => c.view.get(node)?.entry.state), {
    until: (states) => states.every((s) => s === state),
    intervalMs: 10,
    what: `every controller's copy to show ${node} ${state}`,
  });
}

/**
 * Resolves once no lost-node report of `cs` can still be on its way: each controller's pass in flight
 * has ended and one more pass has run (on a copy that shows the lost node lost: call after
 * {@link seen}), and what those passes published has reached the test's connection (a flush of the
 * controller's connection, then of the test's: the server forwards a connection's messages in order).
 * A second report of a node, had there been one, has arrived by then.
 */
async function livenessSettled(cs: FleetController[]) {
  for (const c of cs) {
    await c.lostMonitor!.check(); // the pass in flight, if any
    await c.lostMonitor!.check(); // a fresh one
    await connOf.get(c)!.flush();
  }
  await nats.nc.flush();
}

describe('placement through corral.v1.fleet.task.create', () => {
  it('spread: 30 sandboxes over three ready nodes, 10 each; a cordoned node gets none', async () => {
    const nodes = await Promise.all(['pa', 'pb', 'pc', 'pd'].map((n) => simNode(nats.nc, registry, n, CAP(20))));
    await registry.setState('pd', 'cordon');
    const cs = await controllers({ policy: 'spread' });
    await seen(cs, 'pd', 'cordoned');
    const replies: FleetCreateResult[] = [];
    for (let i = 0; i < 30; i++) replies.push(await fleetCreate(create(`s-${i}`)));
    expect(counts(nodes)).toEqual({ pa: 10, pb: 10, pc: 10, pd: 0 });
    // The reply names the node that received the create; the registry holds its reservation.
    for (const r of replies) {
      expect(nodes.find((n) => n.name === r.node)!.created.has(r.id)).toBe(true);
      expect((await entryOf(r.node)).reservations[r.id]).toMatchObject({ vcpus: 1, memoryMiB: 2048 });
    }
    expect((await entryOf('pa')).used).toEqual({ vcpus: 10, memoryMiB: 20480, sandboxes: 10 });
    expect((await entryOf('pd')).used.sandboxes).toBe(0);
    // Both replicas served some of them (NATS's queue group picks one per request).
    expect(cs.every((c) => c.stats.placed > 0)).toBe(true);
    // The controller sent the spec inline with its reservation.
    const b = nodes[0]!.created.values().next().value!;
    expect(b).toMatchObject({ spec: spec(), rootfs: [], reservation: { vcpus: 1, memoryMiB: 2048 } });
    expect(b.reservation!.ref).toMatch(/^c[01]:\d+$/);
  });

  it('binpack: 30 pipelined sandboxes fill the first node, then the next; the cordoned one gets none', async () => {
    const nodes = await Promise.all(['ba', 'bb', 'bc', 'bd'].map((n) => simNode(nats.nc, registry, n, CAP(12))));
    await registry.setState('ba', 'cordon');
    const cs = await controllers({ policy: 'binpack' });
    await seen(cs, 'ba', 'cordoned');
    const replies = await Promise.all(Array.from({ length: 30 }, (_, i) => fleetCreate(create(`b-${i}`))));
    expect(counts(nodes)).toEqual({ ba: 0, bb: 12, bc: 12, bd: 6 });
    expect(new Set(replies.map((r) => r.id)).size).toBe(30);
  });

  it('the request can name the policy, labels and VM size; sizing follows the inline spec', async () => {
    const nodes = await Promise.all([
      simNode(nats.nc, registry, 'la', CAP(10), { labels: { zone: 'a' } }),
      simNode(nats.nc, registry, 'lb', CAP(10), { labels: { zone: 'b' } }),
      simNode(nats.nc, registry, 'lc', CAP(10), { labels: { zone: 'b', gpu: 'yes' } }),
    ]);
    await controllers({ policy: 'spread' });
    for (let i = 0; i < 4; i++) await fleetCreate(create(`l-${i}`, { labels: { zone: 'b' }, policy: 'binpack' }));
    expect(counts(nodes)).toEqual({ la: 0, lb: 4, lc: 0 });
    const r = await fleetCreate(
      create('l-gpu', {
        labels: { gpu: 'yes' },
        spec: spec({ resources: { cpu: { quota: 200000, period: 100000 }, memory: { limit: 1024 * 1048576 } } }),
      }),
    );
    expect(r.node).toBe('lc');
    expect((await entryOf('lc')).reservations['l-gpu']).toMatchObject({ vcpus: 3, memoryMiB: 3072 });
    const big = await fleetCreate(create('l-vm', { vm: { vcpus: 4, memoryMiB: 4096 }, labels: { zone: 'a' } }));
    expect((await entryOf(big.node)).reservations['l-vm']).toMatchObject({ vcpus: 4, memoryMiB: 4096 });
    await expect(fleetCreate(create('l-none', { labels: { zone: 'c' } }))).rejects.toMatchObject({
      code: 'ResourceExhausted',
      message: expect.stringMatching(/3 without the labels/),
    });
    await expect(fleetCreate(create('l-0'))).rejects.toMatchObject({
      code: 'AlreadyExists',
      message: 'task l-0 is already placed on node lb',
    });
    await expect(fleetCreate({ id: 'x1', bundle: '/tmp/b' })).rejects.toMatchObject({ code: 'InvalidArgument' });
  });

  it('a pod container goes to the node holding its sandbox, with no new reservation', async () => {
    const nodes = await Promise.all(['qa', 'qb'].map((n) => simNode(nats.nc, registry, n, CAP(4))));
    await controllers();
    const pod = await fleetCreate(
      create('pod-1', { spec: { ...spec(), annotations: { 'io.kubernetes.cri.container-type': 'sandbox' } } }),
    );
    const c = await fleetCreate(
      create('pod-1-c', {
        spec: {
          ...spec(),
          annotations: { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': 'pod-1' },
        },
      }),
    );
    expect(c.node).toBe(pod.node);
    expect(nodes.find((n) => n.name === pod.node)!.created.get('pod-1-c')!.reservation).toBeNull();
    expect((await entryOf(pod.node)).used.sandboxes).toBe(1);
    await expect(
      fleetCreate(
        create('c-x', {
          spec: {
            ...spec(),
            annotations: { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': 'nope' },
          },
        }),
      ),
    ).rejects.toMatchObject({ code: 'NotFound' });
  });

  it('a node that refuses (or is silent) is released, the next one tried; request errors return at once', async () => {
    const [ra, rb] = await Promise.all([
      simNode(nats.nc, registry, 'ra', CAP(10)),
      simNode(nats.nc, registry, 'rb', CAP(10)),
    ]);
    await simNode(nats.nc, registry, 'r0', CAP(30), { taskApi: false }); // registered, but no Task API: no responders
    const cs = await controllers({ policy: 'spread', count: 1 });
    ra!.refuse = 'ResourceExhausted';
    for (let i = 0; i < 5; i++) expect((await fleetCreate(create(`r-${i}`))).node).toBe('rb');
    expect(cs[0]!.stats.nextNode).toBeGreaterThanOrEqual(5);
    for (const n of ['ra', 'r0']) expect((await entryOf(n)).used).toEqual({ vcpus: 0, memoryMiB: 0, sandboxes: 0 });
    expect((await entryOf('rb')).used.sandboxes).toBe(5);
    // A request error from the node ends the request: released, not retried elsewhere.
    ra!.refuse = undefined;
    rb!.refuse = 'InvalidArgument';
    await registry.setState('ra', 'cordon');
    await seen(cs, 'ra', 'cordoned');
    await expect(fleetCreate(create('r-bad'))).rejects.toMatchObject({ code: 'InvalidArgument' });
    expect((await entryOf('rb')).reservations['r-bad']).toBeUndefined();
  });

  it('a node that times out keeps its reservation (it may still create the sandbox)', async () => {
    await simNode(nats.nc, registry, 'ta', CAP(2), { taskApi: false });
    const slow: NodeCaller = () => Promise.reject(err.timeout('no reply within 50 ms'));
    await controllers({ callNode: slow, count: 1 });
    await expect(fleetCreate(create('t-1'))).rejects.toMatchObject({
      code: 'Timeout',
      message: expect.stringMatching(/node ta did not answer the create of t-1 in time/),
    });
    expect((await entryOf('ta')).reservations['t-1']).toBeDefined();
    // The agent's reconcile drops it once past the grace (it does not hold t-1).
    const agent = new AgentRegistration(registry, { node: 'ta', capacity: CAP(2), simulated: true });
    expect(await agent.reconcile(() => false, 0)).toEqual(['t-1']);
    expect((await entryOf('ta')).used.sandboxes).toBe(0);
  });

  it('a sandbox released while a reconcile waits its turn stays released (no heartbeat brings it back)', async () => {
    // Seen in the partition suite: a created and deleted sandbox kept its reservation. The agent's start-up
    // reconcile, queued behind other registry writes, held the sandbox (still in the table when it was
    // asked) after its release had already let go; every heartbeat then wrote the reservation back.
    const agent = new AgentRegistration(registry, { node: 'rr', capacity: CAP(2), simulated: true });
    await agent.register();
    cleanups.push(() => agent.deregister());
    await agent.reserve({ id: 'rr-1', vcpus: 1, memoryMiB: 128 });
    const live = new Set(['rr-1']);
    const reconciled = agent.reconcile((id) => live.has(id), 0); // first in the lane
    live.delete('rr-1'); // the sandbox is deleted: it leaves the table and is released
    await Promise.all([reconciled, agent.release({ id: 'rr-1' })]);
    await agent.heartbeat();
    expect((await entryOf('rr')).reservations['rr-1']).toBeUndefined();
    // And a reconcile asked after the release finds nothing to hold.
    await agent.reconcile((id) => live.has(id), 0);
    await agent.heartbeat();
    expect((await entryOf('rr')).used.sandboxes).toBe(0);
  });

  it('a Timeout the node answered (a step timed out, rolled back) releases the reservation', async () => {
    // Found by the simulator (seed 30): a repeat placed afresh after the node's rollback got the first
    // create's remembered Timeout, and the new reservation stayed.
    await simNode(nats.nc, registry, 'tb', CAP(2), { taskApi: false });
    const answered: NodeCaller = () =>
      Promise.reject(fromWire({ code: 'Timeout', message: 'hypervisor.createUser not answered', retryable: true }));
    await controllers({ callNode: answered, count: 1 });
    await expect(fleetCreate(create('t-2'))).rejects.toMatchObject({ code: 'Timeout', message: /createUser/ });
    expect((await entryOf('tb')).reservations['t-2']).toBeUndefined();
    expect((await entryOf('tb')).used.sandboxes).toBe(0);
  });

  it('the injected node caller sees each candidate in order until one accepts', async () => {
    await Promise.all(['ia', 'ib', 'ic'].map((n, i) => simNode(nats.nc, registry, n, CAP(10 - i), { taskApi: false })));
    const asked: string[] = [];
    const caller: NodeCaller = async (node) => {
      asked.push(node);
      if (node !== 'ic')
        throw ensureError({ code: node === 'ia' ? 'Unavailable' : 'ResourceExhausted', message: 'test' });
      return { pid: 7 };
    };
    await controllers({ policy: 'spread', callNode: caller, count: 1 });
    expect(await fleetCreate(create('i-1'))).toEqual({ id: 'i-1', node: 'ic', pid: 7 });
    expect(asked).toEqual(['ia', 'ib', 'ic']); // spread: the biggest node has the most headroom
    expect((await entryOf('ia')).used.sandboxes + (await entryOf('ib')).used.sandboxes).toBe(0);
  });
});

describe('node loss', () => {
  it('a node whose heartbeats stop is marked lost within the bound; its sandboxes reported lost, once', async () => {
    const nodes = await Promise.all(['xa', 'xb', 'xc'].map((n) => simNode(nats.nc, registry, n, CAP(10))));
    const cs = await controllers({ policy: 'spread', boundMs: 3000 });
    for (let i = 0; i < 6; i++) await fleetCreate(create(`x-${i}`));
    const held = [...nodes[1]!.created.keys()].sort();
    expect(held.length).toBe(2);
    const fleetEvents: NodeLostEvent[] = [];
    const sandboxEvents: Record<string, unknown>[] = [];
    let detectedAt = 0;
    const s1 = nats.nc.subscribe(subjects.fleetEvt('*', 'lost'), {
      callback: (_e, m) => {
        detectedAt ||= Date.now();
        fleetEvents.push(decode(m.data) as NodeLostEvent);
      },
    });
    const s2 = nats.nc.subscribe('corral.v1.evt.*.*.lost', {
      callback: (_e, m) => {
        sandboxEvents.push(decode(m.data) as Record<string, unknown>);
      },
    });
    await nats.nc.flush();

    nodes[1]!.reg.stop();
    const stoppedAt = Date.now();
    const lastBeat = (await entryOf('xb')).heartbeatAt;
    await waitFor(() => fleetEvents.length > 0, { timeoutMs: 10_000, intervalMs: 20, what: 'a lost event for xb' });
    // Would a second controller report it again? Once both copies show it lost and the passes that could
    // have reported it are over, any second report has arrived.
    await seen(cs, 'xb', 'lost');
    await livenessSettled(cs);
    s1.unsubscribe();
    s2.unsubscribe();

    const sinceBeat = detectedAt - lastBeat;
    console.log(
      `node loss: heartbeats of xb stopped; marked lost ${sinceBeat} ms after its last heartbeat ` +
        `(${detectedAt - stoppedAt} ms after they stopped); bound 3000 ms + 1000 ms slack`,
    );
    expect(sinceBeat).toBeGreaterThan(3000);
    expect(sinceBeat).toBeLessThanOrEqual(4000);
    expect(fleetEvents).toEqual([
      expect.objectContaining({ node: 'xb', kind: 'lost', heartbeatAt: lastBeat, lostFrom: 'ready', sandboxes: held }),
    ]);
    expect(sandboxEvents.map((e) => e.sandbox).sort()).toEqual(held);
    expect(sandboxEvents[0]).toMatchObject({ node: 'xb', kind: 'lost', reason: 'node lost' });
    expect((await entryOf('xb')).state).toBe('lost');
    for (const n of ['xa', 'xc']) expect((await entryOf(n)).state).toBe('ready');

    // Nothing is placed on a lost node; when its heartbeats resume it is ready again.
    for (let i = 6; i < 10; i++) expect((await fleetCreate(create(`x-${i}`))).node).not.toBe('xb');
    await nodes[1]!.reg.register();
    expect((await entryOf('xb')).state).toBe('ready');
  });

  it("with CORRAL_EVENTS, each sandbox's lost record is in the event log (once, with two controllers)", async () => {
    await ensureEventStream(nats.nc);
    const [ya] = await Promise.all(
      ['ya', 'yb'].map((n) => simNode(nats.nc, registry, n, CAP(4), { heartbeatMs: 100 })),
    );
    const cs = await controllers({ policy: 'binpack', boundMs: 500 });
    for (let i = 0; i < 3; i++) expect((await fleetCreate(create(`y.${i}`))).node).toBe('ya');
    ya!.reg.stop();
    // Both copies show it lost and every pass that could have reported it is over (its appends acknowledged).
    await seen(cs, 'ya', 'lost');
    await livenessSettled(cs);
    const recs = (await readRecords(nats.nc, { node: 'ya' })).filter((r) => r.kind === 'lost');
    expect(recs.map((r) => r.sandbox).sort()).toEqual(['y.0', 'y.1', 'y.2']);
    expect(recs[0]).toMatchObject({ node: 'ya', kind: 'lost', reason: 'node lost' });
    expect((await entryOf('yb')).state).toBe('ready');
  });
});

describe('the agent keeps its entry honest', () => {
  it('heartbeats put back a held reservation an overwrite dropped, and drop one nobody holds once old', async () => {
    const agent = new AgentRegistration(registry, {
      node: 'hh',
      capacity: CAP(4),
      simulated: true,
      heartbeatMs: 50,
      pruneUnheldAfterMs: 300,
    });
    cleanups.push(() => agent.deregister());
    await agent.register();
    // A controller reserves two sandboxes; the node creates one of them (it holds it), the other never arrives.
    await registry.reserve('hh', { id: 'kept', vcpus: 1, memoryMiB: 2048, ref: 'rq:a' });
    await registry.reserve('hh', { id: 'orphan', vcpus: 1, memoryMiB: 2048, ref: 'rq:b' });
    agent.hold('kept', (await entryOf('hh')).reservations.kept!);
    // A lost update (nats-server 2.9 CAS race) drops the held one: written here as a plain overwrite.
    const v = (await registry.get('hh'))!;
    const { kept: _k, ...rest } = v.entry.reservations;
    await registry.kv.put(
      'hh',
      encode({ ...v.entry, reservations: rest, used: { vcpus: 1, memoryMiB: 2048, sandboxes: 1 } }),
    );
    expect(Object.keys((await entryOf('hh')).reservations)).toEqual(['orphan']);
    const e = await waitFor(() => entryOf('hh'), {
      until: (e) => JSON.stringify(Object.keys(e.reservations)) === '["kept"]',
      what: 'heartbeats to put back "kept" and drop "orphan"',
    });
    expect(e.used).toEqual({ vcpus: 1, memoryMiB: 2048, sandboxes: 1 });
    // Released: gone for good (not put back by the heartbeats written after the release).
    await agent.release({ id: 'kept' });
    const beats = agent.beats;
    await waitFor(() => agent.beats >= beats + 2, { what: 'two heartbeats after the release' });
    expect((await entryOf('hh')).reservations).toEqual({});
  });
});

describe('corral fleet (CLI)', () => {
  const run = async (...argv: string[]) => {
    const out: string[] = [];
    const errs: string[] = [];
    const io: Io = {
      env: { NATS_URL: nats.url },
      out: (l) => out.push(l),
      err: (l) => errs.push(l),
      stdout: () => {},
      stderr: () => {},
    };
    const code = await main(['fleet', ...argv], io).catch((e: unknown) => {
      errs.push(`${ensureError(e).code}: ${(e as Error).message}`);
      return -1;
    });
    return { code, out: out.join('\n'), err: errs.join('\n') };
  };

  it('nodes, cordon, uncordon, drain', async () => {
    const [ca] = await Promise.all([
      simNode(nats.nc, registry, 'cli-a', CAP(8), { labels: { zone: 'a' } }),
      simNode(nats.nc, registry, 'cli-b', CAP(8)),
    ]);
    await controllers({ count: 1, policy: 'binpack' });
    for (let i = 0; i < 3; i++) await fleetCreate(create(`cli-${i}`, { labels: { zone: 'a' } }));

    const nodes = await run('nodes');
    expect(nodes.code).toBe(0);
    expect(nodes.out).toMatch(/^NODE\s+STATE\s+VCPUS\s+MEMORY MiB\s+SANDBOXES\s+HEARTBEAT\s+VERSION\s+LABELS$/m);
    expect(nodes.out).toMatch(
      /^cli-a \(simulated\)\s+ready\s+3\/8\s+6144\/16384\s+3\/8\s+\d+\.\ds ago\s+test\s+zone=a$/m,
    );
    expect(nodes.out).toMatch(/2 of 2 nodes are simulated/);
    const json = JSON.parse((await run('nodes', '--json')).out) as (NodeEntry & { heartbeatAgeMs: number })[];
    expect(json.map((n) => [n.node, n.state, n.used.sandboxes, n.simulated])).toEqual([
      ['cli-a', 'ready', 3, true],
      ['cli-b', 'ready', 0, true],
    ]);

    expect(await run('cordon', 'cli-b')).toMatchObject({ code: 0, out: 'cli-b: cordoned' });
    expect(await run('cordon', 'cli-b')).toMatchObject({ code: 0, out: 'cli-b: already cordoned' });
    expect(await run('uncordon', 'cli-b')).toMatchObject({ code: 0, out: 'cli-b: ready' });
    expect((await run('cordon', 'nope')).err).toMatch(/NotFound: node nope is not registered/);

    expect((await run('drain', 'cli-a', '--policy', 'move')).err).toMatch(
      /^InvalidArgument: --policy must be delete or recreate, got "move"/,
    );
    const d = await run('drain', 'cli-a', '--grace', '1s');
    expect(d.code).toBe(0);
    expect(d.out.split('\n')).toEqual([
      'draining cli-a: no new sandboxes; 3 task(s) to stop and delete',
      '[1/3] cli-0: SIGTERM sent, waiting up to 1 s',
      '[1/3] cli-0: deleted (exit status 143)',
      '[2/3] cli-1: SIGTERM sent, waiting up to 1 s',
      '[2/3] cli-1: deleted (exit status 143)',
      '[3/3] cli-2: SIGTERM sent, waiting up to 1 s',
      '[3/3] cli-2: deleted (exit status 143)',
      'drained cli-a: 3 deleted, 0 failed; the node stays cordoned (corral fleet uncordon cli-a to use it again)',
    ]);
    expect(ca!.created.size).toBe(0);
    expect(ca!.kills).toEqual(['cli-0:SIGTERM', 'cli-1:SIGTERM', 'cli-2:SIGTERM']);
    const after = await entryOf('cli-a');
    expect([after.state, after.used, after.reservations]).toEqual([
      'cordoned',
      { vcpus: 0, memoryMiB: 0, sandboxes: 0 },
      {},
    ]);
    expect((await run('fleet-x')).err).toMatch(/InvalidArgument: fleet has no subcommand "fleet-x"/);
  });
});

describe('corral fleet controller (a process)', () => {
  it('serves the fleet subject until SIGTERM', async () => {
    await simNode(nats.nc, registry, 'proc-a', CAP(2));
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        join(REPO, 'src/cli/main.ts'),
        'fleet',
        'controller',
        '--nats',
        nats.url,
        '--name',
        'proc-ctl',
        '--log-level',
        'warn',
      ],
      { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    cleanups.push(async () => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    let stderr = '';
    await within(
      new Promise<void>((res, rej) => {
        child.stderr.on('data', (b: Buffer) => {
          stderr += b.toString();
          if (/ready/.test(stderr)) res();
        });
        child.once('exit', (c) => rej(new Error(`controller exited ${c}: ${stderr}`)));
      }),
      { timeoutMs: 30_000, what: () => `the controller to say ready (stderr: ${stderr})` },
    );
    expect(stderr).toMatch(
      /corral fleet controller proc-ctl ready: corral\.v1\.fleet\.task\.create \(queue corral-fleet\), policy spread, nodes lost after 3000 ms without a heartbeat, 1 node\(s\) registered/,
    );
    expect(await fleetCreate(create('proc-1'))).toMatchObject({ id: 'proc-1', node: 'proc-a' });
    expect((await entryOf('proc-a')).reservations['proc-1']!.ref).toMatch(/^proc-ctl:/);
    const code = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    child.kill('SIGTERM');
    expect(await code).toBe(0);
  });
});

describe('scale (simulated nodes)', () => {
  it('100 simulated nodes, 10,000 placements via two controllers: none past capacity, every slot used', async () => {
    const N = 100;
    const TOTAL = 10_000;
    const IN_FLIGHT = 64;
    // Capacity varies per node, and so does the dimension that runs out first (vCPUs, memory or slots).
    const caps: Resources[] = Array.from({ length: N }, (_, i) => {
      const k = 50 + (i % 5) * 10; // 50..90 sandboxes of 1 vCPU / 2048 MiB
      return i % 3 === 0
        ? { vcpus: k, memoryMiB: 2048 * (k + 7), sandboxes: k + 3 }
        : i % 3 === 1
          ? { vcpus: k + 5, memoryMiB: 2048 * k + 1000, sandboxes: k + 9 }
          : { vcpus: k + 2, memoryMiB: 2048 * (k + 2), sandboxes: k };
    });
    const slots = caps.map((c) => Math.min(c.vcpus, Math.floor(c.memoryMiB / 2048), c.sandboxes));
    const capacityTotal = slots.reduce((a, b) => a + b, 0);
    expect(capacityTotal).toBeLessThan(TOTAL); // requests exceed capacity

    // The nodes share two connections (as they would share a NATS cluster); each has its own heartbeat and Task API.
    const ncs = await Promise.all([0, 1].map((i) => connectNats(nats.url, `sim-nodes-${i}`)));
    cleanups.unshift(async () => {
      for (const nc of ncs) await nc.close();
    });
    const regs = await Promise.all(ncs.map((nc) => NodeRegistry.open(nc)));
    const nodes = await Promise.all(
      caps.map((c, i) => simNode(ncs[i % 2]!, regs[i % 2]!, `sim-${String(i).padStart(3, '0')}`, c)),
    );

    // Every stored revision of every entry, checked: used never past capacity, and always the sum of its reservations.
    const violations: string[] = [];
    let revisions = 0;
    const stopWatch = await registry.watch((node, v) => {
      if (!v) return;
      revisions++;
      const e = v.entry;
      const sum = Object.values(e.reservations).reduce(
        (a, r) => ({ vcpus: a.vcpus + r.vcpus, memoryMiB: a.memoryMiB + r.memoryMiB, sandboxes: a.sandboxes + 1 }),
        { vcpus: 0, memoryMiB: 0, sandboxes: 0 },
      );
      if (
        e.used.vcpus > e.capacity.vcpus ||
        e.used.memoryMiB > e.capacity.memoryMiB ||
        e.used.sandboxes > e.capacity.sandboxes
      )
        violations.push(`${node}@${v.revision}: used ${JSON.stringify(e.used)} > ${JSON.stringify(e.capacity)}`);
      if (JSON.stringify(sum) !== JSON.stringify(e.used))
        violations.push(`${node}@${v.revision}: used ${JSON.stringify(e.used)} != reservations ${JSON.stringify(sum)}`);
    });
    cleanups.push(async () => stopWatch());

    const cs = await controllers({ policy: 'spread' });
    await waitFor(() => cs.map((c) => c.view.size), {
      until: (sizes) => sizes.every((n) => n >= N),
      timeoutMs: 30_000,
      intervalMs: 20,
      what: `both controllers' copies to hold the ${N} nodes`,
    });

    const client = await connectNats(nats.url, 'scale-client');
    cleanups.push(async () => {
      await client.close();
    });
    const lost: string[] = [];
    const lostSub = nats.nc.subscribe(subjects.fleetEvt('*', 'lost'), {
      callback: (_e, m) => {
        lost.push((decode(m.data) as NodeLostEvent).node);
      },
    });
    cleanups.push(async () => lostSub.unsubscribe());
    const codes: Record<string, number> = {};
    const one = async (i: number, lat: number[]) => {
      const s = performance.now();
      try {
        await request<FleetCreateResult>(client, subjects.fleetCreate(), create(`w-${i}`), 60_000);
        lat.push(performance.now() - s);
        codes.ok = (codes.ok ?? 0) + 1;
      } catch (e) {
        const c = ensureError(e).code;
        codes[c] = (codes[c] ?? 0) + 1;
      }
    };
    const t0 = performance.now();
    // The first 200 one at a time (the latency of a placement on its own), the rest pipelined.
    const alone: number[] = [];
    for (let i = 0; i < 200; i++) await one(i, alone);
    const lat: number[] = [];
    let next = 200;
    const tp = performance.now();
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < TOTAL) await one(next++, lat);
      }),
    );
    const secs = (performance.now() - t0) / 1000;
    const pipelinedSecs = (performance.now() - tp) / 1000;
    stopWatch();
    await livenessSettled(cs); // a node marked lost under load would have been reported by now

    const pct = (xs: number[], p: number) =>
      [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!.toFixed(1);
    const conflicts = cs.reduce((a, c) => a + c.stats.conflicts, 0);
    console.log(
      [
        `scale: ${N} SIMULATED nodes (AgentRegistration + fake Task API in this process; no VM runs), ` +
          `2 controllers, ${IN_FLIGHT} requests in flight`,
        `scale: ${TOTAL} placements in ${secs.toFixed(1)} s ` +
          `(pipelined part: ${Math.round((TOTAL - 200) / pipelinedSecs)}/s): ${JSON.stringify(codes)}; ` +
          `fleet capacity ${capacityTotal} sandboxes`,
        `scale: placement latency (client round trip, placed ones): ` +
          `one at a time p50 ${pct(alone, 50)} ms, p99 ${pct(alone, 99)} ms; ` +
          `${IN_FLIGHT} in flight p50 ${pct(lat, 50)} ms, p99 ${pct(lat, 99)} ms`,
        `scale: ${revisions} registry revisions checked, ${conflicts} revision conflicts retried; ` +
          `served ${cs.map((c) => `${c.name}=${c.stats.placed}`).join(' ')}; nodes marked lost: ${lost.length}`,
      ].join('\n'),
    );

    expect(violations).toEqual([]);
    expect(lost).toEqual([]); // heartbeats kept up under load
    expect(codes.ok).toBe(capacityTotal);
    expect(codes.ResourceExhausted).toBe(TOTAL - capacityTotal);
    const final = await registry.list();
    const byName = new Map(final.map((v) => [v.entry.node, v.entry]));
    for (const [i, n] of nodes.entries()) {
      const e = byName.get(n.name)!;
      expect(e.used.vcpus).toBeLessThanOrEqual(e.capacity.vcpus);
      expect(e.used.memoryMiB).toBeLessThanOrEqual(e.capacity.memoryMiB);
      expect(e.used.sandboxes).toBeLessThanOrEqual(e.capacity.sandboxes);
      expect(e.used.sandboxes).toBe(slots[i]); // full: requests exceeded capacity
      // the node got exactly what was reserved on it
      expect(Object.keys(e.reservations).sort()).toEqual([...n.created.keys()].sort());
    }
    expect(secs).toBeLessThan(60);
  }, 180_000);
});
