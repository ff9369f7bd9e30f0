/**
 * The fleet on a 3-server NATS cluster: three agents on this machine (separate processes, data dirs
 * and nkey credentials; simulated VMs, say so), a placement controller with the controller's
 * credentials. 30 sandboxes through the fleet subject land where the spread policy says; a cordoned
 * node gets none; a drained node ends with none; one NATS server (the event stream's leader) SIGKILLed
 * while 30 sandboxes are being created loses no request and no event; a SIGKILLed agent is marked lost
 * within the bound.
 */
import type { ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { startNatsCluster, type LocalNatsCluster } from '../../src/bus/cluster-process.ts';
import { connectNats } from '../../src/bus/connection.ts';
import { ensureEventStream } from '../../src/bus/eventlog.ts';
import { Snapshots } from '../../src/bus/snapshots.ts';
import { jetstreamManager } from '@nats-io/jetstream';
import { request } from '../../src/bus/rpc.ts';
import { EVENTS_STREAM, subjects } from '../../src/bus/subjects.ts';
import { fleetCreateRequest, taskRequest } from '../../src/bus/task-client.ts';
import { readRecords } from '../../src/bus/eventlog-reader.ts';
import { fleetRecreator } from '../../src/fleet/recreate.ts';
import { replay } from '../../src/replay/engine.ts';
import { localRuntimeConfig } from '../../src/cli/commands/up.ts';
import { drainNode, FleetController, NodeRegistry } from '../../src/fleet/index.ts';
import { generateCreds } from '../../infra/nats/gen-creds.ts';
import { REPO } from '../helpers/node.ts';
import { spawnAgent } from '../helpers/agent-process.ts';
import { sleeperCreateBody } from '../helpers/fleet-body.ts';
import { waitFor } from '../helpers/wait.ts';
import { processesMatching, unmountUnder } from '../helpers/leaks.ts';

const NODES = ['fa', 'fb', 'fc'];
/** Which agent or worker a process is (its command line around the node flag), for a failure's message. */
const cmdline = (pid: number) => {
  try {
    const a = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return a.slice(a.indexOf('--node') - 2, a.indexOf('--node') + 2).join(' '); // `worker mount --node fa`
  } catch {
    return '(gone)';
  }
};
const dir = mkdtempSync('/tmp/corral-fleet-');
chmodSync(dir, 0o755);
let cluster: LocalNatsCluster;
let admin: NatsConnection;
let ctlNc: NatsConnection;
let registry: NodeRegistry;
let controller: FleetController;
const agents = new Map<string, ChildProcess>();
let creds: ReturnType<typeof generateCreds>;

function startAgent(node: string): ChildProcess {
  const p = spawnAgent({
    node,
    nats: cluster.url,
    dir: join(dir, node),
    conf: join(dir, 'configuration.toml'),
    args: ['--replicas', '3', '--creds', creds.seedFiles[node]!, '--capacity', 'vcpus=64,memory=65536,sandboxes=20'],
  });
  agents.set(node, p);
  return p;
}

const fleetCreate = (id: string) =>
  request<{ node: string }>(ctlNc, subjects.fleetCreate(), sleeperCreateBody(id), 60_000);

beforeAll(async () => {
  creds = generateCreds({ dir: join(dir, 'creds'), nodes: NODES });
  cluster = await startNatsCluster({
    dataDir: join(dir, 'nats'),
    size: 3,
    extra: creds.authorization,
    readySeedFile: creds.seedFiles.admin,
  });
  writeFileSync(join(dir, 'configuration.toml'), localRuntimeConfig(join(REPO, '.corral/guest')));
  admin = await connectNats(cluster.url, 'fleet-test-admin', { nkeySeedFile: creds.seedFiles.admin });
  // The operator (admin) sets up the R3 stream and buckets once; agents then only open them.
  await ensureEventStream(admin, { replicas: 3 });
  await Snapshots.open(admin, 'admin', 3);
  await NodeRegistry.open(admin, { replicas: 3 });
  for (const n of NODES) {
    mkdirSync(join(dir, n, 'bundles'), { recursive: true });
    startAgent(n);
  }
  ctlNc = await connectNats(cluster.url, 'fleet-test-controller', { nkeySeedFile: creds.seedFiles.controller });
  registry = await NodeRegistry.open(admin, { replicas: 3 });
  await waitFor(async () => (await registry.list()).filter((e) => e.entry.state === 'ready').map((e) => e.entry.node), {
    until: (ready) => ready.length === 3,
    timeoutMs: 60_000,
    intervalMs: 100,
    what: 'the 3 agents registered ready',
  });
  controller = await FleetController.start({
    nc: ctlNc,
    registry: await NodeRegistry.open(ctlNc, { replicas: 3 }),
    policy: 'spread',
  });
  console.log('fleet-cluster: 3 agents with SIMULATED VMs (no QEMU) on a 3-server NATS cluster, per-node nkeys');
}, 180_000);

afterAll(async () => {
  await controller?.stop();
  const exits: string[] = [];
  for (const [node, p] of agents)
    if (p.exitCode !== null || p.signalCode !== null) exits.push(`${node}: ${p.exitCode ?? p.signalCode}`);
  for (const p of agents.values())
    if (p.exitCode === null && p.signalCode === null) {
      p.kill('SIGTERM');
      await new Promise((r) => p.once('exit', r));
    }
  // Workers of an agent that was SIGKILLed and not restarted would outlive it (by design): a leak here.
  const strays = processesMatching(`--data-dir ${dir}/`).map((pid) => `${pid}: ${cmdline(pid)}`);
  for (const pid of processesMatching(`--data-dir ${dir}/`)) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* gone */
    }
  }
  if (strays.length)
    await waitFor(() => processesMatching(`--data-dir ${dir}/`).length === 0, {
      timeoutMs: 30_000,
      intervalMs: 100,
      what: 'the stray workers to exit',
    }).catch(() => {}); // the assertion below names them
  await admin?.close().catch(() => {});
  await ctlNc?.close().catch(() => {});
  await cluster?.stop();
  // Leaks are reported after they are undone: never rm through a mount (the rootfs binds read-only sources).
  const mounts = unmountUnder(dir);
  rmSync(dir, { recursive: true, force: true });
  expect(strays, `agents that had exited before the teardown: ${exits.join(', ') || 'none'}`).toEqual([]);
  expect(mounts).toEqual([]);
}, 180_000);

// A registry listing retries across a failover for up to 30 s (registry.ts): waits on one allow 40 s.
const placed = async () => {
  const out: Record<string, number> = {};
  for (const e of await registry.list()) out[e.entry.node] = Object.keys(e.entry.reservations ?? {}).length;
  return out;
};

describe('fleet on a 3-server cluster', () => {
  it('30 creates spread over the ready nodes; the cordoned node gets none', async () => {
    await registry.setState('fc', 'cordon');
    // A cordon reaches the controller's copy of the registry through its watch: a moment later.
    await waitFor(() => controller.view.get('fc')?.entry.state === 'cordoned', {
      what: "the controller's copy to show fc cordoned",
    });
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => fleetCreate(`s${i}`)));
    const byNode: Record<string, number> = {};
    for (const r of results) byNode[r.node] = (byNode[r.node] ?? 0) + 1;
    expect(byNode).toEqual({ fa: 15, fb: 15 });
    expect(await placed()).toMatchObject({ fa: 15, fb: 15, fc: 0 });
  });

  it('a drained node ends with none', async () => {
    // Drain is an operator's action: the admin credentials (the controller may only create/kill/delete/list).
    const task = <T>(verb: Parameters<typeof subjects.task>[1], body: Record<string, unknown>, t: number) =>
      request<T>(admin, subjects.task('fb', verb as never), body, t);
    const r = await drainNode(registry, 'fb', task, { graceMs: 2000 });
    expect(r.failed).toEqual([]);
    expect(r.deleted).toHaveLength(15);
    expect((await request<{ tasks: unknown[] }>(ctlNc, subjects.task('fb', 'list'), {}, 10_000)).tasks).toEqual([]);
    expect((await placed()).fb).toBe(0);
  });

  it("drain --policy recreate moves a node's sandboxes to the other nodes; running ones run again", async () => {
    const view = (states: Record<string, string>) =>
      waitFor(() => Object.entries(states).every(([n, s]) => controller.view.get(n)?.entry.state === s), {
        what: `the controller's copy to show ${JSON.stringify(states)}`,
      });
    await registry.setState('fa', 'cordon');
    await registry.setState('fb', 'uncordon');
    await view({ fa: 'cordoned', fb: 'ready', fc: 'cordoned' });
    const ids = ['m0', 'm1', 'm2', 'm3'];
    expect((await Promise.all(ids.map((id) => fleetCreate(id)))).map((r) => r.node)).toEqual(['fb', 'fb', 'fb', 'fb']);
    const started = new Set(['m0', 'm1']);
    for (const id of started) await taskRequest(admin, 'fb', 'start', { id }, 30_000);
    await registry.setState('fa', 'uncordon');
    await registry.setState('fc', 'uncordon');
    await view({ fa: 'ready', fc: 'ready' });

    const lines: string[] = [];
    const task = <T>(verb: Parameters<typeof subjects.task>[1], body: Record<string, unknown>, t: number) =>
      taskRequest<T>(admin, 'fb', verb as never, body, t);
    const r = await drainNode(
      registry,
      'fb',
      task,
      { graceMs: 1000, policy: 'recreate', recreator: fleetRecreator(admin, 'fb') },
      (l) => lines.push(l),
    );
    expect(r.failed).toEqual([]);
    expect(r.deleted.sort()).toEqual(ids);
    expect(r.recreated.map((x) => x.id).sort()).toEqual(ids);
    expect(lines.at(-1)).toMatch(/^drained fb: 4 deleted, 4 recreated elsewhere, 0 failed/);
    expect((await taskRequest<{ tasks: unknown[] }>(admin, 'fb', 'list', {}, 10_000)).tasks).toEqual([]);
    for (const x of r.recreated) {
      expect(['fa', 'fc']).toContain(x.node);
      const v = await taskRequest<{ status: string }>(admin, x.node, 'state', { id: x.id }, 10_000);
      expect(v.status, x.id).toBe(started.has(x.id) ? 'running' : 'created');
    }
    await waitFor(placed, {
      until: (p) => p.fb === 0,
      timeoutMs: 40_000,
      intervalMs: 100,
      what: 'no reservation left on fb',
    });
    for (const x of r.recreated) {
      if (started.has(x.id)) {
        await taskRequest(admin, x.node, 'kill', { id: x.id, signal: 'SIGKILL' }, 10_000);
        await taskRequest(admin, x.node, 'wait', { id: x.id }, 30_000);
      }
      await taskRequest(admin, x.node, 'delete', { id: x.id }, 30_000);
    }
  });

  it('one NATS server (the event stream leader) SIGKILLed during 30 creates: no request, no event lost', async () => {
    for (const node of ['fb', 'fc']) await registry.setState(node, 'uncordon');
    const jsm = await jetstreamManager(admin);
    const leader = (await jsm.streams.info(EVENTS_STREAM)).cluster?.leader;
    const victim = cluster.members.findIndex((m) => m.name === leader);
    expect(victim, `the stream leader ${leader} is one of ${cluster.members.map((m) => m.name).join(', ')}`).not.toBe(
      -1,
    );
    const ids = Array.from({ length: 30 }, (_, i) => `k${i}`);
    // A user's client (the admin credentials). The server dies in the middle: 20 creates are sent, it is
    // killed once 10 of them are answered, and the last 10 are sent after the kill.
    const t0 = Date.now();
    let answered = 0;
    const send = (id: string) => {
      const p = fleetCreateRequest<{ id: string; node: string; pid: number }>(admin, sleeperCreateBody(id), 120_000);
      p.then(
        () => answered++,
        () => answered++, // reported by allSettled below
      );
      return p;
    };
    const creates = ids.slice(0, 20).map(send);
    await waitFor(() => answered >= 10, {
      timeoutMs: 60_000,
      intervalMs: 10,
      what: '10 of the first 20 creates answered',
    });
    await cluster.kill(victim);
    const killedAt = Date.now() - t0;
    const answeredBefore = answered;
    creates.push(...ids.slice(20).map(send));
    const results = await Promise.allSettled(creates);
    const doneMs = Date.now() - t0;
    expect(
      results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason)),
    ).toEqual([]);
    const placedOn = new Map(
      (results as PromiseFulfilledResult<{ id: string; node: string }>[]).map((r) => [r.value.id, r.value.node]),
    );
    expect([...placedOn.keys()].sort()).toEqual([...ids].sort());

    // Each sandbox exists once, on the node its reply named, and holds one reservation there.
    const held = new Map<string, string[]>();
    for (const node of NODES) {
      const { tasks } = await taskRequest<{ tasks: { id: string; state: string }[] }>(admin, node, 'list', {}, 30_000);
      for (const t of tasks) if (t.id.startsWith('k')) held.set(t.id, [...(held.get(t.id) ?? []), node]);
    }
    for (const id of ids) expect(held.get(id), id).toEqual([placedOn.get(id)]);
    // KV reads may be served by a replica still catching up after the failover, and a reservation lost to
    // an overwrite during the leader change (seen on 2.9.10) comes back with the node's next heartbeat.
    const reserved = async () =>
      (await registry.list())
        .flatMap((e) => Object.keys(e.entry.reservations).filter((id) => id.startsWith('k')))
        .sort();
    await waitFor(reserved, {
      until: (r) => JSON.stringify(r) === JSON.stringify([...ids].sort()),
      timeoutMs: 40_000,
      intervalMs: 100,
      what: 'one reservation per sandbox',
    });

    // The log holds each sandbox's create input and `created` fact exactly once, and replays to its states.
    // A fact is appended after the reply, not before it (journal.ts), and one whose append met the failover
    // is stored on a later attempt (seen: 10 attempts, 5.6 s after its reply): wait for the last of them.
    let readMs = 0;
    const missing = (rs: Awaited<ReturnType<typeof readRecords>>) =>
      ids.filter((id) => !rs.some((r) => r.sandbox === id && r.kind === 'created'));
    let last: string[] = [];
    const all = await waitFor(
      async () => {
        const t1 = Date.now();
        const rs = await readRecords(admin);
        readMs = Date.now() - t1;
        last = missing(rs);
        return rs;
      },
      {
        until: (rs) => missing(rs).length === 0,
        timeoutMs: 40_000,
        intervalMs: 200,
        what: () => `the created facts of ${last.join(', ')} in the event log`,
      },
    );
    for (const id of ids) {
      const rs = all.filter((r) => r.sandbox === id);
      expect(new Set(rs.map((r) => r.node)), id).toEqual(new Set([placedOn.get(id)]));
      expect(
        rs.filter((r) => r.kind === 'input' && (r.event as { type?: string } | undefined)?.type === 'create'),
        id,
      ).toHaveLength(1);
      expect(
        rs.filter((r) => r.kind === 'created'),
        id,
      ).toHaveLength(1);
      expect((await replay(rs)).divergence, id).toBeUndefined();
    }

    // The server comes back; the sandboxes go (through their nodes), and their reservations with them.
    const t2 = Date.now();
    await cluster.restart(victim);
    const restartMs = Date.now() - t2;
    await Promise.all(ids.map((id) => taskRequest(admin, placedOn.get(id)!, 'delete', { id }, 60_000)));
    await waitFor(reserved, {
      until: (r) => r.length === 0,
      timeoutMs: 40_000,
      intervalMs: 100,
      what: 'the reservations gone with their sandboxes',
    });
    console.log(
      `fleet-cluster: server ${cluster.members[victim]!.name} (event stream leader) SIGKILLed ${killedAt} ms ` +
        `into 30 fleet creates (${answeredBefore} answered before); all 30 answered after ${doneMs} ms, each once; ` +
        `${all.length} records read in ${readMs} ms, none lost; server back in ${restartMs} ms, ` +
        `cleanup ${Date.now() - t2} ms`,
    );
  }, 240_000); // the creates wait up to 120 s each: a hung one fails with its error, not the test timeout

  it('a SIGKILLed agent is marked lost within the bound (3 s)', async () => {
    const fa = agents.get('fa')!;
    const t0 = Date.now();
    fa.kill('SIGKILL');
    await waitFor(async () => (await registry.get('fa'))?.entry.state, {
      until: (s) => s === 'lost',
      timeoutMs: 10_000,
      intervalMs: 50,
      what: 'fa marked lost',
    });
    expect(Date.now() - t0).toBeLessThan(3000 + 2000);
    // Its workers outlive it. Restarted at once, while their connections may still be moving after the server
    // SIGKILL above (so a ping can find no responder), the agent adopts them by their pidfiles (src/workers/
    // pidfile.ts) and starts no second set; the teardown's stray check would find one.
    startAgent('fa');
    await waitFor(async () => (await registry.get('fa'))?.entry.state, {
      until: (s) => s === 'ready',
      timeoutMs: 60_000,
      intervalMs: 100,
      what: 'the restarted fa registered ready',
    });
  });
});
