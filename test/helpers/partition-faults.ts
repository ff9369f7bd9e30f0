/**
 * The fault schedule of the partition suite: one fault at a time, picked by a seeded generator, held for
 * 2–5 s, healed, and then waited out (the member is back: a server takes connections again, a node's
 * heartbeat is fresh again) before a pause of 0.5–1.5 s and the next one, until `done()`. Each fault and
 * its timing is printed, so a failing run says what happened when.
 */
import { connectNats } from '../../src/bus/connection.ts';
import type { NodeRegistry } from '../../src/fleet/index.ts';
import type { DockerFleet, Member } from './docker-fleet.ts';
import { waitFor } from './wait.ts';

export const FAULTS = ['cut-server', 'isolate-node', 'pause-server', 'pause-node', 'kill-node', 'kill-server'] as const;
export type FaultCounts = Record<(typeof FAULTS)[number] | 'total', number>;

/** mulberry32: small, seeded, good enough to pick faults. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runFaults(
  fleet: DockerFleet,
  registry: NodeRegistry,
  seed: number,
  done: () => boolean,
  only: readonly string[] = FAULTS,
  log: (line: string) => void = (l) => console.log(`partitions: ${l}`),
): Promise<FaultCounts> {
  const kinds = FAULTS.filter((f) => only.includes(f));
  if (kinds.length === 0) throw new Error(`no such faults: ${only.join(', ')} (faults: ${FAULTS.join(', ')})`);
  const rand = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const counts = Object.fromEntries([...FAULTS, 'total'].map((f) => [f, 0])) as FaultCounts;
  const t0 = Date.now();
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
  const nodeBack = (m: Member, since: number) =>
    waitFor(async () => (await registry.get(m.name).catch(() => undefined))?.entry, {
      until: (e) => e?.state === 'ready' && e.heartbeatAt > since,
      timeoutMs: 90_000,
      intervalMs: 250,
      what: `${m.name} ready with a heartbeat after the fault`,
    });
  while (!done()) {
    const fault = pick(kinds);
    const m = fault.endsWith('server') ? pick(fleet.servers) : pick(fleet.nodes);
    const hold = 2000 + Math.floor(rand() * 3000);
    const at = Date.now() - t0;
    if (fault === 'cut-server') fleet.cut(m, [...fleet.servers.filter((s) => s !== m), ...fleet.nodes], 'drop', true);
    if (fault === 'isolate-node') fleet.cut(m, fleet.servers, 'reject');
    if (fault.startsWith('pause')) fleet.pause(m);
    if (fault.startsWith('kill')) fleet.kill(m);
    await delay(hold);
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
  return counts;
}
