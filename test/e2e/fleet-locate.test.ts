/**
 * Addressing across the fleet (issue 8, item 10): a command given a task id alone (no --node, no
 * CORRAL_NODE) asks the registry's nodes and goes to the one that holds it, saying which; an id no node
 * holds is NotFound naming the nodes asked; an id two nodes hold is an error naming both. A real agent
 * (simulated VMs) and two simulated nodes on one real nats-server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { taskRequest } from '../../src/bus/task-client.ts';
import { NodeRegistry } from '../../src/fleet/registry.ts';
import { locateTask } from '../../src/fleet/locate.ts';
import { testNode, type TestNode } from '../helpers/node.ts';
import { simNode, type SimNode } from '../helpers/sim-nodes.ts';
import { waitFor } from '../helpers/wait.ts';

let n: TestNode;
let registry: NodeRegistry;
const sims: SimNode[] = [];
const CAP = { vcpus: 8, memoryMiB: 8192, sandboxes: 10 };
/** The CLI as a user without --node or CORRAL_NODE runs it. */
const cli = (args: string[]) => n.cli(args, { CORRAL_NODE: undefined });

beforeAll(async () => {
  n = await testNode({ simulate: true });
  registry = await NodeRegistry.open(n.nc);
  await waitFor(() => registry.get(n.node), { until: (v) => !!v, timeoutMs: 10_000, what: 'the agent registered' });
  for (const name of ['simA', 'simB']) sims.push(await simNode(n.nc, registry, name, CAP));
});
afterAll(async () => {
  for (const s of sims) await s.stop();
  await n?.cleanup();
});

describe('a command given an id alone', () => {
  it('finds the node that holds it, says which, and state, kill, wait, delete work there', async () => {
    const id = 'loc-one';
    await n.call('create', { id, bundle: n.bundle(id, { args: ['sleep', '600'] }) });
    await n.call('start', { id });

    const state = await cli(['state', id]);
    expect(state.stderr.trim()).toBe(`${id} is on node ${n.node}`);
    expect(state.stdout).toMatch(new RegExp(`^${id}\\trunning\\t`));
    expect(state.code).toBe(0);
    const json = await cli(['state', id, '--json']);
    expect(json.stderr).toBe('');
    expect(JSON.parse(json.stdout)).toMatchObject({ id, status: 'running', node: n.node });
    // The fleet module on its own.
    expect(await locateTask(n.nc, id, 'elsewhere')).toEqual({ node: n.node, located: true });

    expect(await cli(['kill', id, '--signal', 'SIGKILL', '--json'])).toMatchObject({ code: 0 });
    const waited = await cli(['wait', id, '--json']);
    expect(JSON.parse(waited.stdout)).toMatchObject({ exitStatus: 137, node: n.node });
    const del = await cli(['delete', id]);
    expect(del).toMatchObject({ code: 0, stderr: `${id} is on node ${n.node}\n` });
    expect(del.stdout).toContain(`deleted ${id}`);
    await n.expectNothingLeft([id]);
  });

  it('a named node is used as before: nothing is looked up or said', async () => {
    const id = 'loc-named';
    await n.call('create', { id, bundle: n.bundle(id, { args: ['sleep', '600'] }) });
    const r = await n.cli(['state', id, '--json']); // CORRAL_NODE set
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).not.toHaveProperty('node');
    const other = await cli(['state', id, '--node', 'simA']);
    expect(other.stderr.trim()).toBe(`corral: NotFound: task ${id} not found`);
    await n.call('delete', { id });
    await n.expectNothingLeft([id]);
  });

  it('an id no node holds is NotFound naming every node asked', async () => {
    const r = await cli(['state', 'loc-nosuch']);
    const asked = [n.node, 'simA', 'simB'].sort().join(', ');
    expect(r.stderr.trim()).toBe(`corral: NotFound: task loc-nosuch not found on any node (asked ${asked})`);
    expect(r.code).not.toBe(0);
  });

  it('an id two nodes hold is an error naming both, and nothing is done to either', async () => {
    const id = 'loc-dup';
    await n.call('create', { id, bundle: n.bundle(id, { args: ['sleep', '600'] }) });
    await taskRequest(n.nc, 'simA', 'createInline', { id }, 5_000);
    const both = [n.node, 'simA'].sort().join(', ');
    for (const verb of ['state', 'kill', 'delete']) {
      const r = await cli([verb, id]);
      expect(r.stderr.trim()).toBe(
        `corral: InvalidArgument: task ${id} is on 2 nodes: ${both}; choose one with --node`,
      );
      expect(r.code).toBe(2);
    }
    expect(sims[0]!.kills).toEqual([]);
    expect((await n.call('state', { id })).status).toBe('created');
    await n.call('delete', { id });
    await taskRequest(n.nc, 'simA', 'delete', { id }, 5_000);
    await n.expectNothingLeft([id]);
  });
});
