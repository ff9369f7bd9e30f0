/**
 * Which node holds a task, for a command given an id alone (docs/api.md, "Addressing across the fleet"):
 * every node of the registry that is not `lost` is asked the task's `state` at once, and the one that
 * knows it is the answer. With no registry, or one whose only node is the default one (a single node,
 * no fleet), nothing is asked and the default node is used, as without a fleet.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { ensureError, err } from '../errors.ts';
import { taskRequest } from '../bus/task-client.ts';
import { NodeRegistry } from './registry.ts';

export interface Location {
  node: string;
  /** True when the node was found by asking the fleet's nodes (false: the default node, nothing asked). */
  located: boolean;
}

/** How long one node may take to answer `state`. */
const ASK_TIMEOUT_MS = 5_000;

/**
 * The node holding task `id`, else `fallback` when there is no fleet to ask.
 * @throws NotFound naming the nodes asked (and those that did not answer) when none holds it;
 *   InvalidArgument naming them when several do.
 */
export async function locateTask(
  nc: NatsConnection,
  id: string,
  fallback: string,
  timeoutMs = ASK_TIMEOUT_MS,
): Promise<Location> {
  const registry = await NodeRegistry.openExisting(nc);
  const entries = registry ? await registry.list().catch(() => []) : [];
  const lost = entries.filter((v) => v.entry.state === 'lost').map((v) => v.entry.node);
  const nodes = entries.filter((v) => v.entry.state !== 'lost').map((v) => v.entry.node);
  if (nodes.length === 0 || (nodes.length === 1 && nodes[0] === fallback)) return { node: fallback, located: false };
  const answers = await Promise.all(
    nodes.map((node) =>
      taskRequest(nc, node, 'state', { id }, timeoutMs, { respondersGraceMs: 0 }).then(
        () => ({ node, code: 'OK' as const }),
        (e: unknown) => ({ node, code: ensureError(e).code }),
      ),
    ),
  );
  const holders = answers.filter((a) => a.code === 'OK').map((a) => a.node);
  if (holders.length === 1) return { node: holders[0]!, located: true };
  if (holders.length > 1)
    throw err.invalid(`task ${id} is on ${holders.length} nodes: ${holders.join(', ')}; choose one with --node`);
  const silent = answers.filter((a) => a.code !== 'NotFound').map((a) => `${a.node} (${a.code})`);
  throw err.notFound(
    `task ${id} not found on any node (asked ${nodes.join(', ')}` +
      (silent.length ? `; no answer from ${silent.join(', ')}` : '') +
      (lost.length ? `; not asked, lost: ${lost.join(', ')}` : '') +
      ')',
  );
}
