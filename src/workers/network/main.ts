/**
 * The network worker: serves `corral.v1.node.<node>.worker.network.<op>` (NetworkOps in domain/ops.ts)
 * through the shared harness: plumbing a sandbox's NICs into taps in its network namespace and removing
 * them again (plumb.ts), the namespaces Corral makes itself (netns.ts), and `scan`. It keeps no state: what
 * it made lives in the kernel, marked with aliases that name the node and the sandbox, so a restarted
 * worker finds it again (docs/decisions/0011-networking.md). Process entry belongs to the CLI.
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { OpHandlers } from '../../domain/ops.ts';
import type { Log } from '../../log.ts';
import { runWorker, type Journal, type OpHandler } from '../harness.ts';
import { createNetns, removeNetns, scan } from './netns.ts';
import { setup, teardown } from './plumb.ts';
import { parseNetns, parseSetup, parseTeardown } from './validate.ts';

export interface NetworkWorkerOptions {
  nc: NatsConnection;
  node: string;
  journalPath: string;
  log?: Log;
  /** Wraps the handler table before serving (fault injection: `Faults.wrap`, which adds `__fault`). */
  wrap?: (handlers: Record<string, OpHandler>) => Record<string, OpHandler>;
}

export function networkHandlers(node: string): OpHandlers<'network'> {
  return {
    setup: async (req, ctx) => setup(parseSetup(req), { node, signal: ctx.signal }),
    teardown: async (req, ctx) => teardown(parseTeardown(req), { node, signal: ctx.signal }),
    createNetns: async (req, ctx) => createNetns(parseNetns('createNetns', req), ctx.signal),
    removeNetns: async (req, ctx) => removeNetns(parseNetns('removeNetns', req), ctx.signal),
    scan: async () => scan(node, AbortSignal.timeout(20_000)),
  };
}

export function startNetworkWorker(o: NetworkWorkerOptions): { sub: Subscription; journal: Journal; stop(): void } {
  const handlers: Record<string, OpHandler> = networkHandlers(o.node);
  const { sub, journal } = runWorker({
    nc: o.nc,
    node: o.node,
    kind: 'network',
    handlers: o.wrap ? o.wrap(handlers) : handlers,
    journalPath: o.journalPath,
    readOps: ['scan'],
    onInternal: (e, op) => o.log?.error({ err: e, op }, 'network worker op failed unexpectedly'),
  });
  return { sub, journal, stop: () => sub.unsubscribe() };
}
