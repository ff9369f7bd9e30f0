/**
 * The fault schedule of the partition suite: one fault at a time, each kind once and then picked at
 * random (one seeded generator for both), held for
 * 2–5 s (a server cut off: 30–35 s, and every node must heartbeat again through the other servers before
 * the heal), healed, and then waited out (the member is back: a server takes connections again, a node's
 * heartbeat is fresh again) before a pause of 0.5–1.5 s and the next one, until `done()`. Each fault and
 * its timing is printed, so a failing run says what happened when.
 */
import { connectNats } from '../../src/bus/connection.ts';
import { prng } from '../../sim/sched.ts';
import type { NodeRegistry } from '../../src/fleet/index.ts';
import type { DockerFleet, Member } from './docker-fleet.ts';
import { waitFor } from './wait.ts';

export const FAULTS = ['cut-server', 'isolate-node', 'pause-server', 'pause-node', 'kill-node', 'kill-server'] as const;
export type FaultCounts = Record<(typeof FAULTS)[number] | 'total', number>;
export interface FaultReport {
  counts: FaultCounts;
  /** Per server cut off: how long until every node heartbeated again, through the other servers. */
  failoverMs: number[];
  /** Cuts the nodes did not get around before the heal. */
  missed: string[];
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runFaults(
  fleet: DockerFleet,
  registry: NodeRegistry,
  seed: number,
  done: () => boolean,
  only: readonly string[] = FAULTS,
  /** Set once every kind has been injected (the workload goes on at least that long). */
  covered: { all: boolean } = { all: false },
  log: (line: string) => void = (l) => console.log(`partitions: ${l}`),
): Promise<FaultReport> {
  const kinds = FAULTS.filter((f) => only.includes(f));
  if (kinds.length === 0) throw new Error(`no such faults: ${only.join(', ')} (faults: ${FAULTS.join(', ')})`);
  const rand = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const counts = Object.fromEntries([...FAULTS, 'total'].map((f) => [f, 0])) as FaultCounts;
  const t0 = Date.now();
  const failoverMs: number[] = [];
  const missed: string[] = [];
  /** Every node heartbeats through the servers left (their connections leave a silent one: connection.ts). */
  const failover = async (m: Member, hold: number) => {
    const cutAt = Date.now();
    // One read at a time, given up after 2 s (a listing retries across a failover for up to 30 s).
    const list = () =>
      Promise.race([
        registry.list().catch(() => []),
        delay(2000).then(() => [] as Awaited<ReturnType<typeof registry.list>>),
      ]);
    const fresh = async () => {
      const es = await list();
      return fleet.nodes.every((n) => (es.find((e) => e.entry.node === n.name)?.entry.heartbeatAt ?? 0) > cutAt + 500);
    };
    const ok = await waitFor(fresh, { until: (v) => v, timeoutMs: hold, intervalMs: 250, what: '' }).catch(() => false);
    if (ok) failoverMs.push(Date.now() - cutAt);
    else {
      const es = await registry.list().catch(() => []);
      const ages = es.map((e) => `${e.entry.node} ${e.entry.heartbeatAt - cutAt} ms`).join(', ');
      missed.push(`${m.name} cut at ${cutAt - t0} ms for ${hold} ms; last heartbeats after the cut: ${ages}`);
    }
    await delay(Math.max(0, hold - (Date.now() - cutAt)));
  };
  const serverBack = (m: Member) =>
    waitFor(
      async () => {
        const c = await connectNats(`nats://${fleet.ip(m)}:4222`, 'partition-probe', { timeoutMs: 1000 }).catch(
          () => undefined,
        );
        await c?.close();
        return !!c;
      },
      { until: (ok) => ok, timeoutMs: 60_000, intervalMs: 200, what: `${m.name} to take connections again` },
    );
  // A node that does not come back says why in its own output (the agent's warnings and errors): its last lines go
  // with the error.
  const nodeBack = (m: Member, since: number) =>
    waitFor(async () => (await registry.get(m.name).catch(() => undefined))?.entry, {
      until: (e) => e?.state === 'ready' && e.heartbeatAt > since,
      timeoutMs: 90_000,
      intervalMs: 250,
      what: `${m.name} ready with a heartbeat after the fault`,
    }).catch((e: unknown) => {
      throw new Error(`${(e as Error).message}\n${m.name}'s last output:\n${m.output.join('').slice(-6000)}`, {
        cause: e,
      });
    });
  // Each kind once first (in a seeded order), so that every run has all of them; then picked at random.
  const first = [...kinds].sort(() => rand() - 0.5);
  while (!done()) {
    const fault = first.shift() ?? pick(kinds);
    if (first.length === 0) covered.all = true;
    const m = fault.endsWith('server') ? pick(fleet.servers) : pick(fleet.nodes);
    // A cut server is held long enough for its clients to find it silent and move (4–6 s, then a connect that
    // may try the cut one first, 3 s) and for its streams to elect other leaders.
    const hold = fault === 'cut-server' ? 30_000 + Math.floor(rand() * 5000) : 2000 + Math.floor(rand() * 3000);
    const at = Date.now() - t0;
    if (fault === 'cut-server') fleet.cut(m, [...fleet.servers.filter((s) => s !== m), ...fleet.nodes], 'drop', true);
    if (fault === 'isolate-node') fleet.cut(m, fleet.servers, 'reject');
    if (fault.startsWith('pause')) fleet.pause(m);
    if (fault.startsWith('kill')) fleet.kill(m);
    await (fault === 'cut-server' ? failover(m, hold) : delay(hold));
    const healedAt = Date.now();
    if (fault === 'cut-server' || fault === 'isolate-node') fleet.heal(m);
    if (fault.startsWith('pause')) fleet.unpause(m);
    if (fault.startsWith('kill')) fleet.start(m);
    await (m.kind === 'server' ? serverBack(m) : nodeBack(m, healedAt));
    counts[fault]++;
    counts.total++;
    log(`fault ${counts.total}: ${fault} ${m.name} at ${at} ms for ${hold} ms, back after ${Date.now() - healedAt} ms`);
    await delay(500 + Math.floor(rand() * 1000));
  }
  return { counts, failoverMs, missed };
}
