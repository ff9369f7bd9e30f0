/**
 * Recreating a drained node's tasks elsewhere (`corral fleet drain --policy recreate`). A fleet create
 * leaves its spec and placement in the task's create input (`inline`, recorded by the agent); the
 * recipe is that, plus the request's rootfs, stdio and options. The task is created again through
 * `corral.v1.fleet.task.create` with the same id (the drained node is not a candidate: it is
 * draining), and started if it was running.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { err } from '../errors.ts';
import { fleetCreateRequest, taskRequest } from '../bus/task-client.ts';
import { readRecords } from '../bus/eventlog-reader.ts';
import type { Recreator, TaskRow } from './drain.ts';

interface CreateInput {
  request?: {
    rootfs?: unknown;
    terminal?: boolean;
    stdin?: string;
    stdout?: string;
    stderr?: string;
    options?: unknown;
  };
}

/** The fleet create body that makes `t` again, from its last create input on `node`. */
export async function recipeOf(nc: NatsConnection, node: string, t: TaskRow): Promise<Record<string, unknown>> {
  const recs = await readRecords(nc, { node, sandbox: t.sandboxId || t.id });
  const input = recs
    .filter(
      (r) => r.kind === 'input' && r.taskId === t.id && (r.event as { type?: string } | undefined)?.type === 'create',
    )
    .at(-1);
  if (!input) throw err.notFound(`no create input of ${t.id} in the event log of ${node}`);
  const inline = input.inline as
    { spec?: Record<string, unknown>; placement?: { labels?: Record<string, string>; vm?: unknown } } | undefined;
  if (!inline?.spec)
    throw err.precondition(
      `${t.id} was created from a bundle on ${node}, not through the fleet: its spec cannot travel`,
    );
  const req = (input.event as CreateInput).request ?? {};
  return {
    id: t.id,
    spec: inline.spec,
    rootfs: req.rootfs ?? [],
    terminal: req.terminal ?? false,
    stdin: req.stdin ?? '',
    stdout: req.stdout ?? '',
    stderr: req.stderr ?? '',
    options: req.options ?? {},
    labels: inline.placement?.labels ?? {},
    ...(inline.placement?.vm ? { vm: inline.placement.vm } : {}),
  };
}

export function fleetRecreator(nc: NatsConnection, node: string, timeoutMs = 300_000): Recreator {
  return {
    prepare: (t) => recipeOf(nc, node, t),
    async create(t, recipe) {
      const r = await fleetCreateRequest<{ node: string }>(nc, recipe as Record<string, unknown>, timeoutMs);
      if (t.status === 'running') await taskRequest(nc, r.node, 'start', { id: t.id }, timeoutMs);
      return r.node;
    },
  };
}
