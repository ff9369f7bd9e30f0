/**
 * One agent's presence in the node registry (registry.ts): its entry, kept fresh by heartbeats, and the
 * reservations of the sandboxes it creates itself or holds. Every write goes through
 * {@link NodeRegistry.update} (compare-and-swap), one at a time per agent (src/util/lanes.ts).
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { Lanes } from '../util/lanes.ts';
import { withHeld, withoutUnheld } from './capacity.ts';
import { corralVersion, hostCapacity } from './host.ts';
import { nodeKey, NodeRegistry, type RegistryOptions } from './registry.ts';
import { withHeartbeat } from './state.ts';
import { ZERO, type NodeEntry, type Reservation, type Resources, type Versioned } from './types.ts';

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
    // not a reservation: nothing to hold
    if (![r.vcpus, r.memoryMiB].every((v) => Number.isInteger(v) && v >= 0) || typeof r.ref !== 'string') return;
    this.held.set(id, { vcpus: r.vcpus, memoryMiB: r.memoryMiB, ref: r.ref, at: this.clock() });
  }

  /**
   * Release a sandbox's reservation, whoever made it (the agent owns its sandboxes once created).
   * No reservation: nothing happens.
   */
  async release(req: { id: string }): Promise<NodeEntry | undefined> {
    const r = await this.serial(() => {
      this.held.delete(req.id); // in the lane: a reconcile or heartbeat ahead of it may still hold it
      return this.registry.release(this.opts.node, req.id, undefined, this.last);
    });
    this.last = r.current ?? this.last;
    return r.current?.entry;
  }

  /**
   * Drop reservations of sandboxes this node does not hold (`isLive`: whether it holds an id, asked when
   * the write is made), older than `graceMs` (younger ones may belong to a
   * createInline still on its way), and hold those of the live ones. For agent start and periodic
   * repair. Returns the ids dropped. Asked late, a sandbox deleted while this waited for its turn is not
   * held again (its release ran first and a held reservation would come back with every heartbeat).
   */
  async reconcile(isLive: (id: string) => boolean, graceMs = 60_000): Promise<string[]> {
    let dropped: string[] = [];
    const r = await this.serial(() =>
      this.registry.update(
        this.opts.node,
        (e) => {
          if (!e) return undefined;
          const keep = new Set(Object.keys(e.reservations).filter(isLive));
          for (const id of keep) this.held.set(id, e.reservations[id]!);
          const next = withoutUnheld(e, new Map([...keep].map((id) => [id, true])), this.clock() - graceMs);
          dropped = Object.keys(e.reservations).filter((id) => !Object.hasOwn(next.reservations, id));
          return dropped.length === 0 ? undefined : next;
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
    await this.beating?.catch(() => {
      // Only waiting for it to settle: its error is its caller's (the timer's tick reports it to onError).
    });
    await this.registry.remove(this.opts.node);
  }
}
