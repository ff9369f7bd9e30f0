/**
 * The fleet across a nats-server restart (SIGKILL, same store, same port): registry entries survive,
 * heartbeats resume, the controllers' watched copies of the registry follow again, placements work.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connectNats } from '../../src/bus/connection.ts';
import { request } from '../../src/bus/rpc.ts';
import { serve } from '../../src/bus/serve.ts';
import { subjects } from '../../src/bus/subjects.ts';
import { FleetController } from '../../src/fleet/controller.ts';
import type { FleetCreateResult } from '../../src/fleet/node-create.ts';
import { AgentRegistration } from '../../src/fleet/agent-registration.ts';
import { NodeRegistry } from '../../src/fleet/registry.ts';
import { natsServer, type TestNats } from '../helpers/nats.ts';
import { waitFor } from '../helpers/wait.ts';

let nats: TestNats;
beforeAll(async () => {
  nats = await natsServer();
});
afterAll(async () => {
  await nats?.cleanup();
});

const spec = {
  ociVersion: '1.0.2',
  process: { args: ['/bin/true'], cwd: '/', user: { uid: 0, gid: 0 } },
  root: { path: 'rootfs' },
  linux: { resources: {} },
};

it("registry, heartbeats, the controller's copy and placement all come back after a nats-server restart", async () => {
  const nodeNc = await connectNats(nats.url, 'restart-node');
  const ctlNc = await connectNats(nats.url, 'restart-ctl');
  const reg = await NodeRegistry.open(nodeNc);
  const agents = ['ra', 'rb'].map(
    (node) =>
      new AgentRegistration(reg, {
        node,
        capacity: { vcpus: 8, memoryMiB: 32768, sandboxes: 8 },
        simulated: true,
        heartbeatMs: 200,
      }),
  );
  for (const a of agents) await a.register();
  let pid = 0;
  const subs = ['ra', 'rb'].map((node) => serve(nodeNc, subjects.nodeCreateInline(node), () => ({ pid: ++pid })));
  const ctl = await FleetController.start({
    nc: ctlNc,
    registry: await NodeRegistry.open(ctlNc),
    liveness: { boundMs: 3000 },
    name: 'rc',
  });
  try {
    const create = (id: string) => request<FleetCreateResult>(nats.nc, subjects.fleetCreate(), { id, spec }, 10_000);
    expect((await create('before-1')).node).toBe('ra');

    await nats.restart({ downMs: 500 });
    // Heartbeats resume on their own (the agents retried through the outage).
    const beats = agents.map((a) => a.beats);
    await waitFor(() => agents.map((a, i) => a.beats - beats[i]!), {
      until: (since) => since.every((n) => n > 2),
      timeoutMs: 10_000,
      intervalMs: 100,
      what: 'three heartbeats of each agent after the restart',
    });

    // The controller's copy follows new writes again: a cordon made after the restart is seen. (The
    // heartbeats written meanwhile reach it too: its watch is back once it shows one of them.)
    const beatAfter = agents[0]!.current!.entry.heartbeatAt; // written after the restart
    await waitFor(() => ctl.view.get('ra')?.entry.heartbeatAt, {
      until: (at) => at !== undefined && at >= beatAfter,
      timeoutMs: 10_000,
      intervalMs: 50,
      what: "the controller's copy to show a heartbeat of ra written after the restart",
    });
    await reg.setState('rb', 'cordon');
    await waitFor(() => ctl.view.get('rb')?.entry.state === 'cordoned', {
      intervalMs: 50,
      what: "the controller's copy to show rb cordoned",
    });

    expect((await create('after-1')).node).toBe('ra');
    const e = (await reg.get('ra'))!.entry;
    expect(Object.keys(e.reservations).sort()).toEqual(['after-1', 'before-1']);
    expect((await reg.get('rb'))!.entry.state).toBe('cordoned'); // never lost: the outage was shorter than the bound
  } finally {
    await ctl.stop();
    for (const a of agents) a.stop();
    for (const s of subs) s.unsubscribe();
    await nodeNc.close();
    await ctlNc.close();
  }
}, 60_000);
