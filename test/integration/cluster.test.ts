/**
 * A 3-server NATS cluster (src/bus/cluster-process.ts) on this machine: JetStream gets a meta leader,
 * CORRAL_EVENTS with 3 replicas takes appends, and with one server SIGKILLed appends (EventLog retries)
 * and reads still work, of the events and of the node registry (also 3 replicas); the killed server,
 * started again, rejoins and catches up.
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
import { AgentRegistration } from '../../src/fleet/agent-registration.ts';
import { waitFor } from '../helpers/wait.ts';

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

describe('3-server NATS cluster', () => {
  it('CORRAL_EVENTS with 3 replicas survives a SIGKILLed server; the server rejoins', async () => {
    expect(cluster.urls).toHaveLength(3);
    const tPlaced = Date.now();
    // R3 needs all three servers known to the meta leader: creation may need a moment after start
    await waitFor(() => ensureEventStream(nc, { replicas: 3 }).then(() => true), {
      ignoreErrors: true,
      timeoutMs: 60_000,
      intervalMs: 200,
      what: 'CORRAL_EVENTS created with 3 replicas',
    });
    const placedMs = Date.now() - tPlaced;
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(EVENTS_STREAM);
    expect(info.config.num_replicas).toBe(3);
    expect(info.cluster?.replicas ?? []).toHaveLength(2);
    const registry = await NodeRegistry.open(nc, { replicas: 3 });
    expect((await jsm.streams.info(`KV_${NODES_BUCKET}`)).config.num_replicas).toBe(3);
    // A node's entry, written before the kill: read back and updated with one server down (below).
    const agent = new AgentRegistration(registry, {
      node: 'n1',
      capacity: { vcpus: 4, memoryMiB: 8192, sandboxes: 4 },
      simulated: true,
      heartbeatMs: 3_600_000,
    });
    const registered = await agent.register();
    agent.stop();

    const log = new EventLog(nc, 'n1', { deadlineMs: 30_000, attemptTimeoutMs: 2000 });
    const seqs: number[] = [];
    for (let i = 0; i < 20; i++) seqs.push(await log.append('sb1', 'fact', { i }));

    // Kill the stream's leader (the worst case: a new leader must be elected).
    const leader = info.cluster?.leader;
    const victim = cluster.members.findIndex((m) => m.name === leader);
    expect(victim, `the stream leader ${leader} is one of ${cluster.members.map((m) => m.name).join(', ')}`).not.toBe(
      -1,
    );
    const t0 = Date.now();
    await cluster.kill(victim);
    for (let i = 20; i < 40; i++) seqs.push(await log.append('sb1', 'fact', { i }));
    const failoverMs = Date.now() - t0;
    expect(new Set(seqs).size).toBe(40);
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);

    // Reads work with one server down: every record is there exactly once, served by a new leader.
    const after = await waitFor(() => jsm.streams.info(EVENTS_STREAM), {
      until: (i) => i.state.messages === 40,
      ignoreErrors: true,
      timeoutMs: 20_000,
      intervalMs: 200,
      what: 'the 40 records in CORRAL_EVENTS with a server down',
    });
    expect(after.cluster?.leader).toBeDefined();
    expect(after.cluster?.leader).not.toBe(leader);
    const last = await jsm.streams.getMessage(EVENTS_STREAM, { last_by_subj: 'corral.v1.evt.n1.sb1.fact' });
    expect(last?.seq).toBe(seqs[39]);
    // So does the registry: the entry written before the kill is there, and takes a write.
    const kept = await waitFor(() => registry.get('n1'), {
      ignoreErrors: true,
      timeoutMs: 20_000,
      intervalMs: 200,
      what: "n1's registry entry with a server down",
    });
    expect(kept?.entry).toMatchObject({ node: 'n1', state: 'ready', registeredAt: registered.registeredAt });
    // The cordon is written with a server down and read back once it holds (the value setState returns
    // was seen stale once under load: see the stop note).
    await registry.setState('n1', 'cordon');
    await waitFor(() => registry.get('n1'), {
      until: (e) => e?.entry.state === 'cordoned',
      timeoutMs: 15_000,
      what: 'n1 cordoned, read back with a server down',
    });

    // The server comes back, rejoins, and its replica catches up (it is current again). Each check also
    // appends one record, so the wait is measured under writes, as an agent's log would see it. Under load
    // a restarted replica was seen not current for over 45 s (CI, once; the cause is not known).
    await cluster.restart(victim);
    const tBack = Date.now();
    const back = cluster.members[victim]!.name;
    await waitFor(
      async () => {
        seqs.push(await log.append('sb1', 'fact', { i: seqs.length }));
        const i = await jsm.streams.info(EVENTS_STREAM);
        return { leader: i.cluster?.leader, replicas: i.cluster?.replicas ?? [] };
      },
      {
        until: (c) => {
          const current = [c.leader, ...c.replicas.filter((r) => r.current && !r.offline).map((r) => r.name)];
          return current.includes(back) && current.length === 3;
        },
        ignoreErrors: true,
        timeoutMs: 60_000,
        intervalMs: 250,
        what: `${back} back as a current replica of CORRAL_EVENTS`,
      },
    );
    const rejoinMs = Date.now() - tBack;
    for (let i = 0; i < 5; i++) seqs.push(await log.append('sb1', 'fact', { i: seqs.length }));
    expect(new Set(seqs).size).toBe(seqs.length);
    expect((await jsm.streams.info(EVENTS_STREAM)).state.messages).toBe(seqs.length);
    console.log(
      `cluster failover: 20 appends across a killed stream leader took ${failoverMs} ms (${log.retries} retries); ` +
        `R3 placement took ${placedMs} ms after start, the restarted server was current after ${rejoinMs} ms`,
    );
  }, 240_000);

  // Found with the partition suite: a server cut off without a reset kept its clients for nats.js's
  // default 2 min × 2 pings (an agent lost to the fleet all that time). A frozen server (SIGSTOP) is
  // the same to its clients: open TCP, no answer.
  it('a connection on a frozen server moves to another server of the cluster (pings: connection.ts)', async () => {
    const c = await connectNats(cluster.url, 'cluster-frozen');
    try {
      const on = c.info?.server_name;
      const victim = cluster.members.find((m) => m.name === on);
      expect(victim, `the connection's server ${on} is a member`).toBeDefined();
      const moved = (async () => {
        for await (const s of c.status()) if (s.type === 'reconnect') return c.info?.server_name;
      })();
      const t0 = Date.now();
      victim!.proc.kill('SIGSTOP');
      try {
        const to = await waitFor(() => moved, {
          until: (n) => n !== undefined,
          timeoutMs: 30_000,
          what: `the connection to leave the frozen ${on}`,
        });
        expect(to).not.toBe(on);
        await c.flush(); // and it works there
        console.log(`cluster: a connection left a frozen server after ${Date.now() - t0} ms, for ${to}`);
      } finally {
        victim!.proc.kill('SIGCONT');
      }
    } finally {
      await c.close();
    }
  }, 60_000);
});
