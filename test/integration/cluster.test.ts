/**
 * A 3-server NATS cluster (src/bus/cluster-process.ts) on this machine: JetStream gets a meta leader,
 * CORRAL_EVENTS with 3 replicas takes appends, and with one server SIGKILLed appends (EventLog retries)
 * and reads still work; the killed server, started again, rejoins and catches up.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsCluster, type LocalNatsCluster } from '../../src/bus/cluster-process.ts';
import { connectNats } from '../../src/bus/connection.ts';
import { ensureEventStream, EventLog } from '../../src/bus/eventlog.ts';
import { EVENTS_STREAM } from '../../src/bus/subjects.ts';
import { NodeRegistry, NODES_BUCKET } from '../../src/fleet/registry.ts';

let dir: string;
let cluster: LocalNatsCluster;
let nc: NatsConnection;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'corral-cluster-'));
  cluster = await startNatsCluster({ dataDir: dir, size: 3, log: () => {} });
  nc = await connectNats(cluster.url, 'cluster-test');
}, 60_000);
afterAll(async () => {
  await nc?.close().catch(() => {});
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Until `f` holds or `ms` passes. */
async function until(f: () => Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (await f().catch(() => false)) return;
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('3-server NATS cluster', () => {
  it('CORRAL_EVENTS with 3 replicas survives a SIGKILLed server; the server rejoins', async () => {
    expect(cluster.urls).toHaveLength(3);
    // R3 needs all three servers known to the meta leader: creation may need a moment after start
    await until(async () => {
      await ensureEventStream(nc, { replicas: 3 });
      return true;
    }, 20_000);
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(EVENTS_STREAM);
    expect(info.config.num_replicas).toBe(3);
    expect(info.cluster?.replicas ?? []).toHaveLength(2);
    const registry = await NodeRegistry.open(nc, { replicas: 3 });
    expect((await jsm.streams.info(`KV_${NODES_BUCKET}`)).config.num_replicas).toBe(3);
    expect(registry).toBeDefined();

    const log = new EventLog(nc, 'n1', { deadlineMs: 30_000, attemptTimeoutMs: 2000 });
    const seqs: number[] = [];
    for (let i = 0; i < 20; i++) seqs.push(await log.append('sb1', 'fact', { i }));

    // Kill the stream's leader (the worst case: a new leader must be elected).
    const leader = info.cluster?.leader;
    const victim = Math.max(
      0,
      cluster.members.findIndex((m) => m.name === leader),
    );
    const t0 = Date.now();
    await cluster.kill(victim);
    for (let i = 20; i < 40; i++) seqs.push(await log.append('sb1', 'fact', { i }));
    const failoverMs = Date.now() - t0;
    expect(new Set(seqs).size).toBe(40);
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);

    // Reads work with one server down: every record is there exactly once.
    await until(async () => (await jsm.streams.info(EVENTS_STREAM)).state.messages === 40, 20_000);
    const last = await jsm.streams.getMessage(EVENTS_STREAM, { last_by_subj: 'corral.v1.evt.n1.sb1.fact' });
    expect(last?.seq).toBe(seqs[39]);

    // The server comes back, rejoins, and its replica catches up (it is current again).
    await cluster.restart(victim);
    await until(async () => {
      const i = await jsm.streams.info(EVENTS_STREAM);
      const peers = [
        i.cluster?.leader,
        ...(i.cluster?.replicas ?? []).filter((r) => r.current && !r.offline).map((r) => r.name),
      ];
      return peers.includes(cluster.members[victim]!.name) && peers.length === 3;
    }, 30_000);
    for (let i = 40; i < 45; i++) seqs.push(await log.append('sb1', 'fact', { i }));
    expect((await jsm.streams.info(EVENTS_STREAM)).state.messages).toBe(45);
    console.log(
      `cluster failover: 20 appends across a killed stream leader took ${failoverMs} ms (${log.retries} retries)`,
    );
  }, 120_000);
});
