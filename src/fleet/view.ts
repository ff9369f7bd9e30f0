/**
 * A controller's local copy of the registry, kept current by a KV watch (plus a full re-read after
 * every reconnect). It is only ever a hint: placement reads it to order candidates, and every
 * reservation is decided again on the stored entry by compare-and-swap. Per key, the highest revision
 * wins, so the initial list, the watch and the controller's own writes can arrive in any order.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { reconnectWatch } from '../bus/connection.ts';
import type { NodeRegistry } from './registry.ts';
import type { Versioned } from './types.ts';

export class RegistryView {
  private readonly entries = new Map<string, Versioned>();
  /** Revision of each key's deletion, so an older PUT arriving late does not resurrect it. */
  private readonly deleted = new Map<string, number>();
  private stopWatch: (() => void) | undefined;
  private stopped = false;

  constructor(private readonly registry: NodeRegistry) {}

  /** List the bucket, then follow it; resolves once the current entries are in. */
  static async follow(
    registry: NodeRegistry,
    nc?: NatsConnection,
    onError?: (e: unknown) => void,
  ): Promise<RegistryView> {
    const v = new RegistryView(registry);
    v.stopWatch = await registry.watch((node, val, rev) => v.apply(node, val, rev), onError);
    await v.resync(false);
    if (nc) {
      const rc = reconnectWatch(nc);
      void (async () => {
        while (!v.stopped) {
          await rc.next();
          if (!v.stopped) await v.resync().catch((e: unknown) => onError?.(e));
        }
      })();
    }
    return v;
  }

  /** Read every entry again (after a reconnect the watch may have missed changes). */
  async resync(dropMissing = true): Promise<void> {
    const listed = await this.registry.list();
    const names = new Set(listed.map((x) => x.entry.node));
    for (const x of listed) this.apply(x.entry.node, x);
    // Deleted while we were not watching (a node re-added meanwhile comes back with its next heartbeat).
    if (dropMissing) for (const node of [...this.entries.keys()]) if (!names.has(node)) this.entries.delete(node);
  }

  /** Take a value if it is newer than what is held. `undefined` with a revision: deleted. */
  apply(node: string, value: Versioned | undefined, deletedAt?: number): void {
    const have = this.entries.get(node);
    if (!value) {
      if (deletedAt !== undefined && have && have.revision > deletedAt) return;
      this.entries.delete(node);
      if (deletedAt !== undefined) this.deleted.set(node, deletedAt);
      return;
    }
    if (have && have.revision >= value.revision) return;
    const del = this.deleted.get(node);
    if (del !== undefined && del >= value.revision) return;
    this.entries.set(node, value);
  }

  get(node: string): Versioned | undefined {
    return this.entries.get(node);
  }
  all(): Versioned[] {
    return [...this.entries.values()];
  }
  get size(): number {
    return this.entries.size;
  }

  stop(): void {
    this.stopped = true;
    this.stopWatch?.();
  }
}
