/**
 * The fleet controller: serves `corral.v1.fleet.task.create` in the queue group `corral-fleet` (run
 * any number of replicas; NATS hands each request to one). For each request it validates and sizes
 * the inline spec (request.ts), orders candidate nodes from its watched copy of the registry
 * (placement.ts), and for each candidate in turn:
 *
 *  1. reserves the sandbox on that node's registry entry by compare-and-swap (registry.ts): the
 *     capacity check is made on the stored entry at the revision written, so no two controllers can
 *     place past a node's capacity, whatever their copies said;
 *  2. forwards the create to the node (`corral.v1.node.<node>.task.createInline`, body
 *     {@link CreateInlineBody}) with the request's `requestId`, so a repeat is safe;
 *  3. if the node refuses (ResourceExhausted, Unavailable, no responders, NotImplemented, Internal,
 *     Cancelled) releases the reservation and tries the next candidate; a request error
 *     (InvalidArgument, AlreadyExists, NotFound, FailedPrecondition, or a Timeout the node answered:
 *     one of its steps timed out and the create was rolled back) is released and returned at once;
 *     no answer in time keeps the reservation (the node may still create it; its agent reconciles
 *     reservations it does not hold) and is returned as a Timeout.
 *
 * It replies `{id, node, pid}` or the last error. Each replica also runs the liveness monitor.
 *
 * A repeat of a request (same id and `requestId`, e.g. sent again by a client whose NATS server died)
 * joins the first copy when this replica is still placing it; otherwise it finds the first one's
 * reservation (its ref is `rq:<requestId>`) and joins it on that node instead of placing again. A
 * repeat handed to another replica while the first is still being reserved, before that replica's
 * registry copy holds the reservation, could place on a second node (documented in docs/api.md).
 *
 * Within one process, requests are assumed onto its copy the moment their node is chosen (as
 * kube-scheduler's assume cache does: assume-cache.ts), so concurrent requests of one replica spread as the policy
 * says instead of all choosing the same "best" node; and one replica sends one compare-and-swap per
 * node at a time (a local queue per node, for throughput: it would only lose races against itself).
 * Neither is needed for correctness.
 */
import { randomUUID } from 'node:crypto';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { ensureError, err, type CorralError, type Code } from '../errors.ts';
import type { Log } from '../log.ts';
import { serve } from '../bus/serve.ts';
import { subjects } from '../bus/subjects.ts';
import { AssumeCache } from './assume-cache.ts';
import { LivenessMonitor, natsLostEvents, type LostEvents } from './liveness.ts';
import { place, whyUnplaceable, type Policy } from './placement.ts';
import type { NodeRegistry } from './registry.ts';
import { natsNodeCaller, type CreateInlineBody, type FleetCreateResult, type NodeCaller } from './node-create.ts';
import { parseFleetCreate, sizeFleetCreate, type SizedRequest } from './request.ts';
import type { NodeEntry, Versioned } from './types.ts';
import { RegistryView } from './view.ts';
import { Lanes } from '../util/lanes.ts';
import { placementSpan } from './placement-span.ts';

export const FLEET_QUEUE = 'corral-fleet';

export interface ControllerOptions {
  nc: NatsConnection;
  registry: NodeRegistry;
  /** When the request names none. @default spread */
  policy?: Policy;
  /** @default createInline over NATS */
  callNode?: NodeCaller;
  /** How long a node's create may take (a VM boot). @default 300 s */
  nodeTimeoutMs?: number;
  /** Lost-node detection; `false` turns it off. @default { boundMs: 3000 } */
  liveness?: { boundMs?: number; everyMs?: number } | false;
  /** @default natsLostEvents(nc) */
  events?: LostEvents;
  /** @default corral-fleet */
  queue?: string;
  /** For logs and reservation refs. @default a random id */
  name?: string;
  log?: Log;
}

/** Codes after which the next candidate may do better (the node, not the request, was the problem). */
const NEXT_NODE: ReadonlySet<Code> = new Set<Code>([
  'ResourceExhausted',
  'Unavailable',
  'NotImplemented',
  'Internal',
  'Cancelled',
]);

export interface ControllerStats {
  placed: number;
  failed: number;
  /** Candidates that refused (CAS said full/not ready, or the node refused) before one took it. */
  nextNode: number;
  /** Revision conflicts met by this replica's registry writes. */
  conflicts: number;
}

export class FleetController {
  readonly name: string;
  private readonly policy: Policy;
  private readonly callNode: NodeCaller;
  private readonly nodeTimeoutMs: number;
  private sub: Subscription | undefined;
  private liveness: LivenessMonitor | undefined;
  private n = 0;
  /** Reservations chosen but not yet stored: added to `used` when placing. */
  private readonly assumed = new AssumeCache();
  /** One registry write per node at a time from this replica. */
  private readonly lanes = new Lanes();
  private readonly stats0 = { placed: 0, failed: 0, nextNode: 0 };
  /** Requests with a requestId being placed by this replica: a repeat joins its first copy. */
  private readonly inflight = new Map<string, Promise<FleetCreateResult>>();

  private constructor(
    private readonly o: ControllerOptions,
    readonly view: RegistryView,
  ) {
    this.name = o.name ?? `fleet-${randomUUID().slice(0, 8)}`;
    this.policy = o.policy ?? 'spread';
    this.callNode = o.callNode ?? natsNodeCaller(o.nc);
    this.nodeTimeoutMs = o.nodeTimeoutMs ?? 300_000;
  }

  /** Follow the registry, start the liveness monitor and serve the fleet subject. */
  static async start(o: ControllerOptions): Promise<FleetController> {
    const view = await RegistryView.follow(o.registry, o.nc, (e) => o.log?.warn({ err: e }, 'registry watch'));
    const c = new FleetController(o, view);
    if (o.liveness !== false) {
      c.liveness = new LivenessMonitor({
        registry: o.registry,
        entries: () => view.all(),
        events: o.events ?? natsLostEvents(o.nc),
        boundMs: o.liveness?.boundMs,
        everyMs: o.liveness?.everyMs,
        onLost: (e) =>
          o.log?.warn(
            { node: e.node, heartbeatAt: e.heartbeatAt, sandboxes: Object.keys(e.reservations).length },
            'node lost',
          ),
        onError: (e) => o.log?.error({ err: e }, 'liveness check'),
      });
      c.liveness.start();
    }
    c.sub = serve(o.nc, subjects.fleetCreate(), (body) => c.create(body), {
      queue: o.queue ?? FLEET_QUEUE,
      onInternal: (e) => o.log?.error({ err: e }, 'fleet create failed unexpectedly'),
    });
    await o.nc.flush();
    return c;
  }

  get stats(): ControllerStats {
    return { ...this.stats0, conflicts: this.o.registry.conflicts };
  }
  get lostMonitor(): LivenessMonitor | undefined {
    return this.liveness;
  }

  /**
   * Handle one fleet create (what the subscription calls; callable directly in tests). A repeat of one
   * in flight here joins it.
   */
  async create(body: unknown): Promise<FleetCreateResult> {
    const req = parseFleetCreate(body);
    const key = req.requestId ? `${req.id}/${req.requestId}` : undefined;
    const joined = key ? this.inflight.get(key) : undefined;
    if (joined) return joined;
    const p = (async () => {
      try {
        const r = await placementSpan(req.id, () => this.place(sizeFleetCreate(req)));
        this.stats0.placed++;
        return r;
      } catch (e) {
        this.stats0.failed++;
        throw e;
      }
    })();
    if (key) {
      this.inflight.set(key, p);
      void p
        .finally(() => this.inflight.delete(key))
        .catch(() => {
          // The same rejection as `p`'s, which is returned to the caller: reported there.
        });
    }
    return p;
  }

  private async place(s: SizedRequest): Promise<FleetCreateResult> {
    const req = s.request;
    const requestId = req.requestId ?? randomUUID();
    const body = (reservation: CreateInlineBody['reservation']): CreateInlineBody => ({
      id: req.id,
      spec: req.spec,
      rootfs: req.rootfs,
      terminal: req.terminal,
      stdin: req.stdin,
      stdout: req.stdout,
      stderr: req.stderr,
      options: req.options,
      reservation,
      requestId,
      placement: { labels: req.labels, ...(req.vm ? { vm: req.vm } : {}) },
    });
    if (s.containerType === 'pod_container') {
      const home = this.view.all().find((v) => Object.hasOwn(v.entry.reservations, s.sandboxId));
      if (!home) throw err.notFound(`sandbox ${s.sandboxId} of pod container ${req.id} is on no registered node`);
      const r = await this.callNode(home.entry.node, body(null), this.nodeTimeoutMs);
      return { id: req.id, node: home.entry.node, pid: r.pid };
    }
    let dup = this.view.all().find((v) => Object.hasOwn(v.entry.reservations, req.id));
    if (dup) {
      // Our copy may be behind a release (a drain recreating the task elsewhere): confirm on a fresh read.
      const fresh = await this.o.registry.get(dup.entry.node);
      if (fresh) this.view.apply(dup.entry.node, fresh);
      dup = fresh && Object.hasOwn(fresh.entry.reservations, req.id) ? fresh : undefined;
    }
    if (dup) {
      const had = dup.entry.reservations[req.id]!;
      if (!req.requestId || had.ref !== `rq:${req.requestId}`)
        throw err.exists(`task ${req.id} is already placed on node ${dup.entry.node}`);
      const r = await this.callNode(
        dup.entry.node,
        body({ vcpus: had.vcpus, memoryMiB: had.memoryMiB, ref: had.ref }),
        this.nodeTimeoutMs,
      ); // a repeat: join the first
      return { id: req.id, node: dup.entry.node, pid: r.pid };
    }

    const preq = { ...s.demand, labels: req.labels };
    const candidates = place(preq, this.assumedEntries(), req.policy ?? this.policy);
    if (candidates.length === 0) throw err.exhausted(whyUnplaceable(preq, this.assumedEntries()));
    let last: CorralError | undefined;
    for (const [i, node] of candidates.entries()) {
      if (i > 0) this.stats0.nextNode++;
      const ref = req.requestId ? `rq:${req.requestId}` : `${this.name}:${++this.n}`;
      this.assumed.assume(node, ref, s.demand);
      let reserved: Versioned | undefined;
      try {
        reserved = await this.lanes.run(node, async () => {
          const r = await this.o.registry.reserve(node, { id: req.id, ref, ...s.demand }, this.view.get(node));
          if (r.current) this.view.apply(node, r.current);
          return r.current;
        });
      } catch (e) {
        last = ensureError(e);
        if (last.code === 'AlreadyExists' || last.code === 'InvalidArgument') throw last;
        // Our copy was behind (a cordon, a reservation by another replica): take the stored entry, so
        // that the next requests do not choose this node on the same stale copy.
        void this.o.registry.get(node).then(
          (v) => {
            if (v) this.view.apply(node, v);
          },
          () => {
            // Only a quicker refresh: the view follows the registry's watch anyway (errors logged there).
          },
        );
        continue; // full, not ready, gone, or the registry did not answer: next
      } finally {
        this.assumed.forget(node, ref);
      }
      try {
        const r = await this.callNode(node, body({ ...s.demand, ref }), this.nodeTimeoutMs);
        return { id: req.id, node, pid: r.pid };
      } catch (e) {
        const ce = ensureError(e);
        // A repeat of a create that failed is answered its first outcome (the node's ledger), while this
        // replica may have reserved afresh (the node released the first reservation on its rollback):
        // only silence may mean the node is still creating it.
        if (ce.code === 'Timeout' && !ce.answered) {
          this.o.log?.warn({ node, id: req.id }, 'node did not answer createInline in time; its reservation is kept');
          throw err.timeout(
            `node ${node} did not answer the create of ${req.id} in time (it may still create it): ${ce.message}`,
            ce,
          );
        }
        await this.lanes
          .run(node, async () => {
            const r = await this.o.registry.release(node, req.id, ref, reserved ?? this.view.get(node));
            if (r.current) this.view.apply(node, r.current);
          })
          .catch((x: unknown) =>
            this.o.log?.error({ node, id: req.id, err: x }, 'release after a refused create failed'),
          );
        if (!NEXT_NODE.has(ce.code)) throw ce;
        this.o.log?.warn(
          { node, id: req.id, code: ce.code, message: ce.message },
          'node refused the create; trying the next candidate',
        );
        last = ce;
      }
    }
    throw last ?? err.exhausted(whyUnplaceable(preq, this.assumedEntries()));
  }

  /** The view's entries with this replica's chosen-but-unstored reservations added to `used`. */
  private assumedEntries(): NodeEntry[] {
    return this.assumed.apply(this.view.all().map((v) => v.entry));
  }

  /** Stop serving (requests in flight finish), stop the liveness monitor and the watch. */
  async stop(): Promise<void> {
    this.sub?.unsubscribe();
    this.liveness?.stop();
    this.view.stop();
    await this.lanes.idle();
  }
}
