/**
 * The mount worker: serves `corral.v1.node.<node>.worker.mount.<op>` with the Mounter's effects through
 * the shared harness (opId de-dup with a journal, deadlines, the reply envelope). Before serving it
 * scans its roots and reports what it finds mounted (architecture: workers re-report on start; the
 * agent decides what to keep). Process entry (argv, signals) belongs to the CLI.
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { OpHandlers } from '../../domain/ops.ts';
import type { Log } from '../../log.ts';
import { runWorker, type Journal, type OpHandler, type WorkerOptions } from '../harness.ts';
import { Mounter, type MounterOptions, type ScanResult } from './mounter.ts';
import { parseBind, parseMkdir, parseMountRootfs, parseRemoveTree, parseUnmountAll } from './validate.ts';

export interface MountWorkerOptions extends MounterOptions {
  nc: NatsConnection;
  node: string;
  /** Append-only file of op outcomes, so that a restarted worker answers an old opId with its first outcome. */
  journalPath: string;
  log?: Log;
  /** Test hook, passed to the harness. */
  beforeOp?: WorkerOptions['beforeOp'];
  /** Wraps the handler table before serving (fault injection: `Faults.wrap`, which adds `__fault`). */
  wrap?: (handlers: Record<string, OpHandler>) => Record<string, OpHandler>;
}

export interface MountWorker {
  mounter: Mounter;
  /** What was mounted under the roots when the worker started. */
  found: ScanResult['mounts'];
  sub: Subscription;
  journal: Journal;
  /** Stop taking ops and wait (up to `timeoutMs`) for the running ones to answer. */
  stop(timeoutMs?: number): Promise<void>;
}

export const MOUNT_READ_OPS = ['scan'] as const;

export function mountHandlers(m: Mounter): OpHandlers<'mount'> {
  return {
    mountRootfs: async (req, ctx) => m.mountRootfs(parseMountRootfs(req), ctx),
    bind: async (req, ctx) => m.bind(parseBind(req), ctx),
    unmountAll: async (req, ctx) => m.unmountAll(parseUnmountAll(req), ctx),
    mkdir: async (req, ctx) => m.mkdir(parseMkdir(req), ctx),
    removeTree: async (req, ctx) => m.removeTree(parseRemoveTree(req), ctx),
    scan: async () => m.scan(),
  };
}

export async function startMountWorker(o: MountWorkerOptions): Promise<MountWorker> {
  const mounter = new Mounter(o);
  if (mounter.fallback)
    o.log?.warn(
      { reason: mounter.fallback },
      'mount(2) through koffi is unavailable: the mount worker forks mount(8)/umount(8) for every mount',
    );
  else o.log?.info({ via: mounter.calls.via }, `mount worker mounts through ${mounter.calls.via}`);
  const { mounts: found } = await mounter.scan();
  o.log?.info(
    { roots: mounter.policy.roots, mounts: found },
    `mount worker found ${found.length} mount(s) under its roots`,
  );

  const inflight = new Set<Promise<unknown>>();
  const handlers: Record<string, OpHandler> = {};
  for (const [op, h] of Object.entries(mountHandlers(mounter))) {
    handlers[op] = (req, ctx) => {
      const p = h(req, ctx);
      inflight.add(p);
      void p
        .finally(() => inflight.delete(p))
        .catch(() => {
          // The rejection is returned to the harness, which answers with it; this copy only tracks `inflight`.
        });
      return p;
    };
  }

  const { sub, journal } = runWorker({
    nc: o.nc,
    node: o.node,
    kind: 'mount',
    handlers: o.wrap ? o.wrap(handlers) : handlers,
    journalPath: o.journalPath,
    readOps: [...MOUNT_READ_OPS],
    beforeOp: o.beforeOp,
    onInternal: (e, op) => o.log?.error({ err: e, op }, 'mount worker op failed unexpectedly'),
  });

  return {
    mounter,
    found,
    sub,
    journal,
    async stop(timeoutMs = 10_000) {
      sub.unsubscribe();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...inflight]),
        new Promise<void>((r) => {
          timer = setTimeout(r, timeoutMs);
        }),
      ]);
      clearTimeout(timer);
      // Let the harness journal and answer the ops that just finished.
      await new Promise<void>((r) => setImmediate(r));
    },
  };
}
