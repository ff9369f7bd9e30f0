/**
 * Fleet numbers for `npm run bench`, measured in the same run:
 *
 *   placement    client round trip of `corral.v1.fleet.task.create` with 100 SIMULATED nodes (registry
 *                entries with heartbeats and a fake Task API that answers createInline at once: no
 *                agent, no VM), one controller: p50/p99 one at a time, and with 32 in flight
 *   throughput   creates per second through the fleet subject (controller → createInline → agent) next
 *                to the same creates sent to the node's Task API directly, on one real agent with real
 *                workers and real mounts whose VMs are SIMULATED; same spec, same rootfs bind, 8 in flight
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fleetCreateRequest } from '../src/bus/task-client.ts';
import { FleetController } from '../src/fleet/controller.ts';
import { NodeRegistry } from '../src/fleet/registry.ts';
import { natsServer } from '../test/helpers/nats.ts';
import { REPO, testNode } from '../test/helpers/node.ts';
import { simNode } from '../test/helpers/sim-nodes.ts';

export interface FleetBench {
  nodes: number;
  placementAlone: number[];
  placementInFlight: number[];
  creates: number;
  directPerSec: number;
  fleetPerSec: number;
}

const spec = JSON.parse(readFileSync(join(REPO, 'examples/hello/config.json'), 'utf8')) as Record<string, unknown>;
const sleeper = { ...spec, process: { ...(spec.process as object), args: ['sleep', '600'] } };
const rootfs = [{ type: 'bind', source: join(REPO, 'examples/hello/rootfs'), options: ['rbind', 'ro'] }];

/** Run `f` for 0..n-1 with `width` in flight; resolves with the wall time in ms. */
async function pool(n: number, width: number, f: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) await f(next++);
    }),
  );
  return performance.now() - t0;
}

export async function benchFleet(o: {
  nodes?: number;
  placements?: number;
  creates?: number;
  say: (s: string) => void;
}): Promise<FleetBench> {
  const N = o.nodes ?? 100;
  const P = o.placements ?? 300;
  const C = o.creates ?? 60;

  // Placement latency with N simulated nodes.
  const nats = await natsServer();
  const placementAlone: number[] = [];
  const placementInFlight: number[] = [];
  try {
    const registry = await NodeRegistry.open(nats.nc);
    const nodes = await Promise.all(
      Array.from({ length: N }, (_, i) =>
        simNode(nats.nc, registry, `sim-${String(i).padStart(3, '0')}`, {
          vcpus: 4096,
          memoryMiB: 4096 * 4096,
          sandboxes: 1000,
        }),
      ),
    );
    const c = await FleetController.start({ nc: nats.nc, registry, policy: 'spread', liveness: false });
    try {
      while (c.view.size < N) await new Promise((r) => setTimeout(r, 20));
      const one = async (id: string, into: number[]) => {
        const t = performance.now();
        await fleetCreateRequest(nats.nc, { id, spec: sleeper, rootfs }, 30_000);
        into.push(performance.now() - t);
      };
      for (let i = 0; i < 20; i++) await one(`warm-${i}`, []);
      for (let i = 0; i < P; i++) await one(`p-${i}`, placementAlone);
      await pool(P, 32, (i) => one(`q-${i}`, placementInFlight));
    } finally {
      await c.stop();
      for (const n of nodes) await n.stop();
    }
    o.say(`  fleet placement with ${N} SIMULATED nodes: ${P} one at a time and ${P} with 32 in flight`);
  } finally {
    await nats.cleanup();
  }

  // Create throughput: fleet subject vs the node directly, one agent with simulated VMs.
  const n = await testNode({ simulate: true, env: { CORRAL_CAPACITY: 'vcpus=4096,memory=16777216,sandboxes=1000' } });
  let directMs: number;
  let fleetMs: number;
  try {
    const c = await FleetController.start({
      nc: n.nc,
      registry: await NodeRegistry.open(n.nc),
      policy: 'spread',
      liveness: false,
    });
    try {
      while (c.view.get(n.node)?.entry.state !== 'ready') await new Promise((r) => setTimeout(r, 20));
      const bundles = Array.from({ length: C }, (_, i) =>
        n.bundle(`d${i}`, { args: ['sleep', '600'], emptyRootfs: true }),
      );
      // What the fleet creates carry inline.
      for (const b of bundles) writeFileSync(join(b, 'config.json'), JSON.stringify(sleeper));
      const deleteAll = (prefix: string) => pool(C, 8, (i) => n.call('delete', { id: `${prefix}${i}` }, 60_000));
      directMs = await pool(C, 8, (i) => n.call('create', { id: `d${i}`, bundle: bundles[i], rootfs }, 60_000));
      await deleteAll('d');
      fleetMs = await pool(C, 8, (i) => fleetCreateRequest(n.nc, { id: `f${i}`, spec: sleeper, rootfs }, 60_000));
      await deleteAll('f');
    } finally {
      await c.stop();
    }
    o.say(`  create throughput: ${C} creates each way on one agent with SIMULATED VMs (real workers, real mounts)`);
  } finally {
    await n.cleanup();
  }
  return {
    nodes: N,
    placementAlone,
    placementInFlight,
    creates: C,
    directPerSec: C / (directMs / 1000),
    fleetPerSec: C / (fleetMs / 1000),
  };
}
