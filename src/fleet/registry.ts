/**
 * The node registry: the JetStream KV bucket CORRAL_NODES, one key per node (the node name), each
 * value a MessagePack {@link NodeEntry}. Every write is a read-modify-write with compare-and-swap on
 * the entry's revision (`kv.update(key, value, revision)`): a writer that lost a race re-reads and
 * applies its change again, so concurrent agents (heartbeats) and controllers (reservations,
 * lost marks) never overwrite each other and `used` never passes `capacity`
 * (docs/decisions/0006-fleet.md). No lock is held anywhere.
 *
 * The agent's side (register, heartbeat, reserve, release, reconcile) is agent-registration.ts.
 */
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { err } from '../errors.ts';
import { decode, encode } from '../bus/codec.ts';
import { nodeName } from '../bus/node-name.ts';
import { retrying, withDeadline } from '../bus/retry.ts';
import { isTransientPublishError } from '../bus/eventlog.ts';
import { isWrongLastSequence } from '../bus/nats-errors.ts';
import { withReservation, withoutReservation, type ReserveRequest } from './capacity.ts';
import { withState, type StateAction } from './state.ts';
import { checkEntry, type NodeEntry, type Versioned } from './types.ts';

export const NODES_BUCKET = 'CORRAL_NODES';

/** A node's registry key: its name, checked by the one node-name rule (src/bus/node-name.ts). */
export const nodeKey = (node: string): string => nodeName(node);

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

  /** Open the bucket only if it exists (for readers, which must not create it); undefined when it does not. */
  static async openExisting(nc: NatsConnection, opts: RegistryOptions = {}): Promise<NodeRegistry | undefined> {
    const kv = await new Kvm(nc).open(NODES_BUCKET).catch(() => undefined);
    return kv && new NodeRegistry(kv, opts.updateDeadlineMs ?? 10_000);
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
