/**
 * The node registry: the JetStream KV bucket CORRAL_NODES, one key per node (the node name), each
 * value a MessagePack {@link NodeEntry}. Every write is a read-modify-write with compare-and-swap on
 * the entry's revision (`kv.update(key, value, revision)`): a writer that lost a race re-reads and
 * applies its change again, so concurrent agents (heartbeats) and controllers (reservations,
 * lost marks) never overwrite each other and `used` never passes `capacity`
 * (docs/decisions/0006-fleet.md). No lock is held anywhere.
 *
 * {@link AgentRegistration} is the agent's side: register, heartbeat, reserve, release, reconcile.
 */
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { err } from '../errors.ts';
import { decode, encode } from '../bus/codec.ts';
import { retrying, withDeadline } from '../bus/retry.ts';
import { Lanes } from './lanes.ts';
import { isTransientPublishError } from '../bus/eventlog.ts';
import { isWrongLastSequence } from '../bus/nats-errors.ts';
import {
  withHeld,
  withoutUnheld,
  withReservation,
  withoutReservation,
  sumReservations,
  type ReserveRequest,
} from './capacity.ts';
import { corralVersion, hostCapacity } from './host.ts';
import { withHeartbeat, withState, type StateAction } from './state.ts';
import { checkEntry, ZERO, type NodeEntry, type Reservation, type Resources, type Versioned } from './types.ts';

export const NODES_BUCKET = 'CORRAL_NODES';

/** KV keys are node names; they must also be subject tokens (Task API subjects carry them). */
const KEY = /^[A-Za-z0-9_-]{1,200}$/;
export function nodeKey(node: string): string {
  if (!KEY.test(node))
    throw err.invalid(`node name ${JSON.stringify(node)} cannot be a registry key: use letters, digits, _ and -`);
  return node;
}

/**
 * A compare-and-swap that lost a race: the entry's revision moved since it was read (JetStream API
 * codes StreamWrongLastSequence / StreamWrongLastSequenceUnknown, never the message text).
 */
export const isRevisionConflict = (e: unknown): boolean => isWrongLastSequence(e);

export interface RegistryOptions {
  /** Bucket replicas when the bucket is created (3 on a 3-server cluster). @default 1 */
  replicas?: number;
  /** A single read-modify-write gives up after this long (conflicts, timeouts). @default 10 s */
  updateDeadlineMs?: number;
}

/** `mutate` returns the new entry, or undefined for "nothing to write"; it may throw to refuse. */
export type Mutate = (current: NodeEntry | undefined) => NodeEntry | undefined;

export interface UpdateResult {
  /** The entry as stored after the update (or as read, when nothing was written); undefined: no entry. */
  current: Versioned | undefined;
  wrote: boolean;
  /** Revision conflicts met on the way (lost races). */
  conflicts: number;
}

export class NodeRegistry {
  /** Revision conflicts met by all updates through this instance (for tests and stats). */
  conflicts = 0;
  private constructor(
    readonly kv: KV,
    private readonly deadlineMs: number,
  ) {}

  /** Open the bucket, creating it (history 1, file storage) if it does not exist. */
  static async open(nc: NatsConnection, opts: RegistryOptions = {}): Promise<NodeRegistry> {
    try {
      const kv = await new Kvm(nc).create(NODES_BUCKET, { history: 1, replicas: opts.replicas ?? 1 });
      return new NodeRegistry(kv, opts.updateDeadlineMs ?? 10_000);
    } catch (e) {
      throw err.unavailable(`cannot open the node registry ${NODES_BUCKET}: ${(e as Error).message}`, e);
    }
  }

  async get(node: string): Promise<Versioned | undefined> {
    const k = nodeKey(node);
    const e = await this.kv.get(k).catch((x: unknown) => {
      throw err.unavailable(`registry read of ${node} failed: ${(x as Error).message}`, x);
    });
    if (!e || e.operation !== 'PUT' || e.value.length === 0) return undefined;
    return { entry: checkEntry(decode(e.value)), revision: e.revision };
  }

  /** Every node's entry, by name (retried across a failover for up to 30 s). */
  async list(): Promise<Versioned[]> {
    return retrying('list the node registry', async () => {
      const keys: string[] = [];
      const it = await this.kv.keys();
      // The listing's consumer can stall for good across a failover: give it up and list again.
      await withDeadline(
        (async () => {
          for await (const k of it) keys.push(k);
        })(),
        5000,
        'registry key listing',
        () => it.stop(),
      );
      const out = (await Promise.all(keys.map((k) => this.get(k)))).filter((v): v is Versioned => !!v);
      return out.sort((a, b) => (a.entry.node < b.entry.node ? -1 : a.entry.node > b.entry.node ? 1 : 0));
    });
  }

  /**
   * Read-modify-write of one entry with compare-and-swap. Starts from `hint` (a cached read) when
   * given, else reads. On a revision conflict or a write whose outcome is unknown (timeout,
   * reconnect) it reads again and calls `mutate` again, until the deadline. When `mutate` refuses
   * (throws) or finds nothing to do on a cached `hint`, it is asked once more on a fresh read before
   * that stands.
   */
  async update(node: string, mutate: Mutate, hint?: Versioned): Promise<UpdateResult> {
    const k = nodeKey(node);
    const until = Date.now() + this.deadlineMs;
    let cur = hint;
    let fresh = !hint;
    if (!cur) cur = await this.get(node);
    let conflicts = 0;
    for (let attempt = 0; ; attempt++) {
      let next: NodeEntry | undefined;
      try {
        next = mutate(cur?.entry);
      } catch (e) {
        if (fresh) throw e;
        cur = await this.get(node);
        fresh = true;
        continue;
      }
      if (next === undefined) {
        // "Nothing to do" decided on a cached copy may be wrong (a release of a reservation the copy
        // predates): confirm it on a fresh read.
        if (!fresh) {
          cur = await this.get(node);
          fresh = true;
          continue;
        }
        return { current: cur, wrote: false, conflicts };
      }
      if (next.node !== node) throw err.internal(`registry update of ${node} would write an entry named ${next.node}`);
      try {
        const data = encode(next);
        const revision = cur ? await this.kv.update(k, data, cur.revision) : await this.kv.create(k, data);
        return { current: { entry: next, revision }, wrote: true, conflicts };
      } catch (e) {
        const conflict = isRevisionConflict(e);
        if (!conflict && !isTransientPublishError(e))
          throw err.unavailable(`registry write of ${node} failed: ${(e as Error).message}`, e);
        if (conflict) {
          conflicts++;
          this.conflicts++;
        }
        if (Date.now() > until)
          throw err.unavailable(
            `registry write of ${node} did not succeed within ${this.deadlineMs} ms (${conflicts} revision conflicts)`,
            e,
          );
        // Many writers on one entry: back off a little, with jitter, so that one of them wins.
        if (attempt >= 2) await new Promise((r) => setTimeout(r, Math.random() * Math.min(20, 2 * attempt)));
        cur = await this.get(node);
        fresh = true;
      }
    }
  }

  /**
   * Reserve one sandbox's resources on a node (see {@link withReservation}).
   * @throws NotFound when the node is not registered; ResourceExhausted; AlreadyExists.
   */
  reserve(node: string, r: ReserveRequest, hint?: Versioned, now: () => number = Date.now): Promise<UpdateResult> {
    return this.update(
      node,
      (e) => {
        if (!e) throw err.notFound(`node ${node} is not registered`);
        return withReservation(e, r, now());
      },
      hint,
    );
  }

  /** Release a reservation; with `ref`, only one made by that writer. Missing node or id: nothing to do. */
  release(node: string, id: string, ref?: string, hint?: Versioned): Promise<UpdateResult> {
    return this.update(node, (e) => (e ? withoutReservation(e, id, ref) : undefined), hint);
  }

  /** cordon / uncordon / drain / drained (see {@link withState}). @throws NotFound, FailedPrecondition */
  setState(node: string, action: StateAction): Promise<UpdateResult> {
    return this.update(node, (e) => {
      if (!e) throw err.notFound(`node ${node} is not registered`);
      return withState(e, action);
    });
  }

  /**
   * Follow every change: `onChange(node, value, revision)` with the entry (undefined when deleted), from
   * the current values on. Returns a function that stops watching.
   */
  async watch(
    onChange: (node: string, value: Versioned | undefined, revision: number) => void,
    onError?: (e: unknown) => void,
  ): Promise<() => void> {
    const it = await this.kv.watch();
    void (async () => {
      for await (const e of it) {
        try {
          if (e.operation === 'PUT' && e.value.length)
            onChange(e.key, { entry: checkEntry(decode(e.value)), revision: e.revision }, e.revision);
          else onChange(e.key, undefined, e.revision);
        } catch (x) {
          onError?.(x);
        }
      }
    })().catch((x: unknown) => onError?.(x));
    return () => it.stop();
  }

  /** Remove a node's entry (a node taken out of the fleet for good). */
  async remove(node: string): Promise<void> {
    await this.kv.delete(nodeKey(node));
  }
}

export interface RegisterInfo {
  /** @default the host's (see hostCapacity) */
  capacity?: Partial<Resources>;
  labels?: Record<string, string>;
  /** @default package.json's version */
  version?: string;
  simulated?: boolean;
}

export interface AgentRegistrationOptions extends RegisterInfo {
  node: string;
  /** Heartbeat period. @default 1000 ms */
  heartbeatMs?: number;
  /**
   * The agent holds every sandbox on its node: each heartbeat drops reservations it does not hold that
   * are older than this (a release lost to a concurrent write). Off by default (simulated nodes in tests).
   */
  pruneUnheldAfterMs?: number;
  /** Errors of background heartbeats (they keep going). */
  onError?: (e: unknown) => void;
  clock?: () => number;
}

/**
 * One agent's presence in the registry. `register()` writes the entry (keeping its reservations and
 * an operator's cordon across agent restarts) and starts heartbeats; `reserve`/`release` change
 * `used` by compare-and-swap, for sandboxes the agent creates itself (a fleet create arrives with its
 * reservation already made by the controller). Its reservations carry `ref = agent:<node>`.
 */
export class AgentRegistration {
  private timer: NodeJS.Timeout | undefined;
  private last: Versioned | undefined;
  private info: Required<Omit<RegisterInfo, 'simulated'>> & { capacity: Resources; simulated?: boolean };
  private readonly clock: () => number;
  private beating: Promise<void> | undefined;
  /** Reservations of the sandboxes this agent holds: restored by heartbeats if they vanish (withHeld). */
  private readonly held = new Map<string, Reservation>();
  /** This agent's writes to its entry, one at a time (lanes.ts: the nats-server 2.9 CAS race, #4320). */
  private readonly lanes = new Lanes();
  private serial<T>(f: () => Promise<T>): Promise<T> {
    return this.lanes.run(this.opts.node, f);
  }
  /** Heartbeats written (for tests). */
  beats = 0;

  constructor(
    readonly registry: NodeRegistry,
    private readonly opts: AgentRegistrationOptions,
  ) {
    nodeKey(opts.node);
    this.clock = opts.clock ?? Date.now;
    this.info = this.resolve(opts);
  }

  static async open(nc: NatsConnection, opts: AgentRegistrationOptions & RegistryOptions): Promise<AgentRegistration> {
    return new AgentRegistration(await NodeRegistry.open(nc, opts), opts);
  }

  get node(): string {
    return this.opts.node;
  }
  /** The entry as this agent last wrote or read it. */
  get current(): Versioned | undefined {
    return this.last;
  }
  get ref(): string {
    return `agent:${this.opts.node}`;
  }

  private resolve(i: RegisterInfo) {
    return {
      capacity: hostCapacity(i.capacity),
      labels: { ...(i.labels ?? {}) },
      version: i.version ?? corralVersion(),
      ...(i.simulated ? { simulated: true } : {}),
    };
  }

  private fresh(now: number): NodeEntry {
    return {
      node: this.opts.node,
      state: 'ready',
      labels: this.info.labels,
      capacity: this.info.capacity,
      used: { ...ZERO },
      heartbeatAt: now,
      version: this.info.version,
      ...(this.info.simulated ? { simulated: true } : {}),
      reservations: {},
      registeredAt: now,
    };
  }

  /**
   * Write this node's entry: a new one (state ready), or the existing one with this capacity, labels
   * and version (its reservations and an operator's cordon or drain stay; a lost node is back).
   * Starts the heartbeats.
   */
  async register(info: RegisterInfo = {}): Promise<NodeEntry> {
    this.info = this.resolve({
      ...this.opts,
      ...info,
      capacity: { ...this.opts.capacity, ...info.capacity },
      labels: info.labels ?? this.opts.labels,
    });
    const r = await this.serial(() =>
      this.registry.update(this.opts.node, (e) => {
        const now = this.clock();
        if (!e) return this.fresh(now);
        const { simulated: _s, ...rest } = withHeartbeat(e, now);
        return {
          ...rest,
          labels: this.info.labels,
          capacity: this.info.capacity,
          version: this.info.version,
          ...(this.info.simulated ? { simulated: true } : {}),
        };
      }),
    );
    this.last = r.current;
    this.startHeartbeats();
    return r.current!.entry;
  }

  /** One heartbeat now (the timer calls this). Re-creates the entry if someone deleted it. */
  async heartbeat(): Promise<void> {
    if (this.beating) return this.beating;
    this.beating = (async () => {
      const r = await this.serial(() =>
        this.registry.update(
          this.opts.node,
          (e) => {
            const now = this.clock();
            if (!e) return this.fresh(now);
            const beat = withHeld(withHeartbeat(e, now), this.held);
            return this.opts.pruneUnheldAfterMs
              ? withoutUnheld(beat, this.held, now - this.opts.pruneUnheldAfterMs)
              : beat;
          },
          this.last,
        ),
      );
      this.last = r.current;
      this.beats++;
    })().finally(() => {
      this.beating = undefined;
    });
    return this.beating;
  }

  private startHeartbeats(): void {
    if (this.timer) return;
    const every = this.opts.heartbeatMs ?? 1000;
    const tick = () => {
      const t0 = Date.now();
      this.heartbeat()
        .catch((e: unknown) => this.opts.onError?.(e))
        .finally(() => {
          if (!this.timer) return; // stopped meanwhile
          this.timer = setTimeout(tick, Math.max(0, every - (Date.now() - t0)));
          this.timer.unref?.();
        });
    };
    this.timer = setTimeout(tick, every);
    this.timer.unref?.();
  }

  /**
   * Reserve a sandbox this agent creates itself.
   * @throws ResourceExhausted (full, or the node is not ready), AlreadyExists (id reserved by a controller
   *   or another writer), NotFound (not registered).
   */
  async reserve(req: { id: string; vcpus: number; memoryMiB: number }): Promise<NodeEntry> {
    const r = await this.serial(() =>
      this.registry.reserve(this.opts.node, { ...req, ref: this.ref }, this.last, this.clock),
    );
    this.last = r.current;
    const mine = r.current?.entry.reservations[req.id];
    if (mine) this.held.set(req.id, mine);
    return r.current!.entry;
  }

  /** A sandbox this agent now holds, with the reservation made for it: kept in the entry from now on. */
  hold(id: string, r: Pick<Reservation, 'vcpus' | 'memoryMiB' | 'ref'>): void {
    if (![r.vcpus, r.memoryMiB].every((v) => Number.isInteger(v) && v >= 0) || typeof r.ref !== 'string') return; // not a reservation
    this.held.set(id, { vcpus: r.vcpus, memoryMiB: r.memoryMiB, ref: r.ref, at: this.clock() });
  }

  /** Release a sandbox's reservation, whoever made it (the agent owns its sandboxes once created). No reservation: nothing happens. */
  async release(req: { id: string }): Promise<NodeEntry | undefined> {
    this.held.delete(req.id);
    const r = await this.serial(() => this.registry.release(this.opts.node, req.id, undefined, this.last));
    this.last = r.current ?? this.last;
    return r.current?.entry;
  }

  /**
   * Drop reservations of sandboxes this node does not hold (`live`: the ids it holds), older than
   * `graceMs` (younger ones may belong to a createInline still on its way), and hold those of the
   * live ones. For agent start and periodic repair. Returns the ids dropped.
   */
  async reconcile(live: Iterable<string>, graceMs = 60_000): Promise<string[]> {
    const keep = new Set(live);
    let dropped: string[] = [];
    const r = await this.serial(() =>
      this.registry.update(
        this.opts.node,
        (e) => {
          if (!e) return undefined;
          const now = this.clock();
          for (const [id, x] of Object.entries(e.reservations)) if (keep.has(id)) this.held.set(id, x);
          dropped = Object.entries(e.reservations)
            .filter(([id, x]) => !keep.has(id) && now - x.at > graceMs)
            .map(([id]) => id);
          if (dropped.length === 0) return undefined;
          const reservations = Object.fromEntries(
            Object.entries(e.reservations).filter(([id]) => !dropped.includes(id)),
          );
          return { ...e, reservations, used: sumReservations(reservations) };
        },
        this.last,
      ),
    );
    this.last = r.current ?? this.last;
    return dropped;
  }

  /** Stop heartbeating (the entry stays; controllers mark the node lost once the bound passes). */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Stop and remove the entry (a node leaving the fleet on purpose: no lost events). */
  async deregister(): Promise<void> {
    this.stop();
    await this.beating?.catch(() => {});
    await this.registry.remove(this.opts.node);
  }
}
