/**
 * The fleet path end to end on one real node: the agent registers itself, a placement controller
 * serves the fleet subject, and `corral run --fleet` with an inline spec lands on the node, runs in a
 * QEMU guest, and gives its capacity back when deleted. (The three-node cluster test is the fleet
 * issue's; this one proves the agent's side: registration, createInline, release.)
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FleetController, NodeRegistry } from '../../src/fleet/index.ts';
import { REPO, testNode, type TestNode } from '../helpers/node.ts';
import { waitFor } from '../helpers/wait.ts';

let n: TestNode;
let controller: { stop(): Promise<void> | void } | undefined;
let registry: NodeRegistry;
beforeAll(async () => {
  n = await testNode();
  registry = await NodeRegistry.open(n.nc);
  controller = await FleetController.start({ nc: n.nc, registry });
});
afterAll(async () => {
  await controller?.stop();
  await n?.cleanup();
});

/** Waits until the node's entry holds no reservation, then asserts nothing is counted as used. */
async function reservationsReleased() {
  const v = await waitFor(() => registry.get(n.node), {
    until: (v) => Object.keys(v?.entry.reservations ?? {}).length === 0,
    timeoutMs: 10_000,
    what: `node ${n.node}'s reservations released`,
  });
  expect(v?.entry.used).toMatchObject({ sandboxes: 0 });
}

it('corral run --fleet places the sandbox, runs it in a guest and releases its capacity', async () => {
  const entry = await waitFor(() => registry.get(n.node), {
    until: (v) => v?.entry.state === 'ready',
    timeoutMs: 10_000,
    what: `node ${n.node} registered ready`,
  });
  expect(entry?.entry).toMatchObject({ node: n.node, state: 'ready' });
  const b = n.bundle('fleet1', { args: ['sh', '-c', 'echo placed by the fleet; exit 4'] });
  const r = await n.cli([
    'run',
    '--fleet',
    '--id',
    'fleet1',
    '--bundle',
    b,
    '--rootfs',
    `bind:${REPO}/examples/hello/rootfs:rbind,ro`,
    '--rm',
  ]);
  expect(r.stderr).toContain(`on node ${n.node}`);
  expect(r.stdout).toContain('placed by the fleet');
  expect(r.code).toBe(4);
  await reservationsReleased();
  await n.expectNothingLeft(['fleet1']);
});

it('a fleet create that fails on the node gives its reservation back and leaves no bundle behind', async () => {
  const b = n.bundle('fleet2', { args: ['true'] });
  const r = await n.cli(['create', 'fleet2', '--fleet', '--bundle', b, '--rootfs', 'nosuchfs:none']);
  expect(r.code).not.toBe(0);
  expect(r.stderr).toMatch(/^corral: InvalidArgument: failed to mount rootfs component/);
  const { existsSync } = await import('node:fs');
  expect(existsSync(`${n.dataDir}/bundles/fleet/fleet2`)).toBe(false);
  await reservationsReleased();
});
