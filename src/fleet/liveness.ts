/**
 * Node loss: a node whose last heartbeat is older than the bound (default 3 s) is marked `lost`.
 * The decision is pure ({@link nodesToMarkLost}); the apply step ({@link markLost}) re-decides on the
 * stored entry inside a compare-and-swap, so when several controllers watch the same node exactly one
 * of them marks it and publishes its events: `corral.v1.fleet.evt.<node>.lost` (core NATS) and one
 * `corral.v1.evt.<node>.<sandbox>.lost` per sandbox the node held (its reservations; recorded in
 * CORRAL_EVENTS when that stream exists).
 *
 * `heartbeatAt` is the agent's clock and `now` the controller's: clocks must agree (NTP) to well
 * under the bound.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { encode } from '../bus/codec.ts';
import { EventLog } from '../bus/eventlog.ts';
import { EVENTS_STREAM, subjects } from '../bus/subjects.ts';
import { isPoolId } from '../domain/pool.ts';
import type { NodeRegistry } from './registry.ts';
import type { NodeEntry, Versioned } from './types.ts';

export const DEFAULT_LOST_AFTER_MS = 3000;

/**
 * Nodes to mark lost at `now`: not lost yet, and their last heartbeat more than `boundMs` ago
 * (exactly `boundMs` is still alive). Sorted by name.
 */
export function nodesToMarkLost(
  entries: readonly Pick<NodeEntry, 'node' | 'state' | 'heartbeatAt'>[],
  now: number,
  boundMs = DEFAULT_LOST_AFTER_MS,
): string[] {
  return entries
    .filter((e) => e.state !== 'lost' && now - e.heartbeatAt > boundMs)
    .map((e) => e.node)
    .sort();
}

/** What is published when a node is marked lost. */
export interface LostEvents {
  nodeLost(entry: NodeEntry): Promise<void>;
}

/** The node event's body (`corral.v1.fleet.evt.<node>.lost`). */
export interface NodeLostEvent {
  node: string;
  kind: 'lost';
  at: number;
  heartbeatAt: number;
  /** The state it had (it returns to it when heartbeats resume). */
  lostFrom: string;
  /** Task ids of the sandboxes it held. */
  sandboxes: string[];
}

/**
 * Publish over NATS: the node event on core NATS; each sandbox's `lost` record through the event log
 * (acknowledged, `Nats-Msg-Id` `lost:<node>:<sandbox>:<lostAt>`, so a repeat is stored once) when
 * CORRAL_EVENTS exists, else on core NATS too.
 */
export function natsLostEvents(nc: NatsConnection): LostEvents {
  return {
    async nodeLost(e) {
      const at = e.lostAt ?? Date.now();
      // A pool VM's reservation (docs/decisions/0016) is no sandbox: nothing of it is lost but capacity.
      const sandboxes = Object.keys(e.reservations)
        .filter((id) => !isPoolId(id))
        .sort();
      const ev: NodeLostEvent = {
        node: e.node,
        kind: 'lost',
        at,
        heartbeatAt: e.heartbeatAt,
        lostFrom: e.lostFrom ?? 'ready',
        sandboxes,
      };
      nc.publish(subjects.fleetEvt(e.node, 'lost'), encode(ev));
      if (sandboxes.length === 0) return;
      const stream = await jetstreamManager(nc)
        .then((m) => m.streams.info(EVENTS_STREAM))
        .then(
          () => true,
          () => false,
        );
      const log = stream ? new EventLog(nc, e.node, { deadlineMs: 10_000 }) : undefined;
      await Promise.all(
        sandboxes.map(async (id) => {
          const data = { taskId: id, heartbeatAt: e.heartbeatAt, reason: 'node lost' };
          if (log) await log.append(id, 'lost', data, `lost:${e.node}:${id}:${at}`);
          else
            nc.publish(
              subjects.sandboxLost(e.node, id),
              encode({ node: e.node, sandbox: id, kind: 'lost', at, ...data }),
            );
        }),
      );
    },
  };
}

/**
 * Mark one node lost if it still qualifies on the stored entry. Returns the entry as marked, or
 * undefined when it was not (a heartbeat came in, another controller marked it first).
 */
export async function markLost(
  registry: NodeRegistry,
  node: string,
  now: () => number,
  boundMs: number,
  hint?: Versioned,
): Promise<NodeEntry | undefined> {
  const r = await registry.update(
    node,
    (e) => {
      if (!e) return undefined;
      const t = now();
      if (nodesToMarkLost([e], t, boundMs).length === 0) return undefined;
      return { ...e, state: 'lost', lostAt: t, lostFrom: e.state === 'lost' ? (e.lostFrom ?? 'ready') : e.state };
    },
    hint,
  );
  return r.wrote ? r.current!.entry : undefined;
}

export interface LivenessOptions {
  registry: NodeRegistry;
  /** The entries to check (a controller's watched view). */
  entries: () => Versioned[];
  events: LostEvents;
  /** @default 3000 */
  boundMs?: number;
  /** How often to check. @default min(250, bound / 4) */
  everyMs?: number;
  clock?: () => number;
  onLost?: (entry: NodeEntry) => void;
  onError?: (e: unknown) => void;
}

/** Checks the view on an interval and marks (then reports) lost nodes. */
export class LivenessMonitor {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<string[]> | undefined;
  readonly boundMs: number;

  constructor(private readonly o: LivenessOptions) {
    this.boundMs = o.boundMs ?? DEFAULT_LOST_AFTER_MS;
  }

  start(): void {
    if (this.timer) return;
    const every = this.o.everyMs ?? Math.max(10, Math.min(250, this.boundMs / 4));
    this.timer = setInterval(() => {
      void this.check().catch((e: unknown) => this.o.onError?.(e));
    }, every);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One pass: mark what qualifies, publish its events. Returns the nodes this pass marked. */
  check(): Promise<string[]> {
    if (this.running) return this.running;
    this.running = (async () => {
      const clock = this.o.clock ?? Date.now;
      const all = this.o.entries();
      const due = nodesToMarkLost(
        all.map((v) => v.entry),
        clock(),
        this.boundMs,
      );
      const marked: string[] = [];
      for (const node of due) {
        try {
          const e = await markLost(
            this.o.registry,
            node,
            clock,
            this.boundMs,
            all.find((v) => v.entry.node === node),
          );
          if (!e) continue;
          marked.push(node);
          this.o.onLost?.(e);
          await this.o.events.nodeLost(e);
        } catch (x) {
          this.o.onError?.(x);
        }
      }
      return marked;
    })().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }
}
