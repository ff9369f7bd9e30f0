/**
 * One controller replica's reservations chosen but not yet stored (kube-scheduler's "assume cache"):
 * the moment a request's node is chosen it is assumed onto the replica's copy of the registry, so that
 * the replica's concurrent requests spread as the policy says instead of all choosing the same "best"
 * node. Not needed for correctness: the registry's compare-and-swap is what bounds `used`.
 */
import type { Demand } from './capacity.ts';
import type { NodeEntry } from './types.ts';

export class AssumeCache {
  /** Per node, per reservation ref. */
  private readonly pending = new Map<string, Map<string, Demand>>();

  /** `entries` with the assumed reservations added to `used`. */
  apply(entries: readonly NodeEntry[]): NodeEntry[] {
    return entries.map((entry) => {
      const p = this.pending.get(entry.node);
      if (!p || p.size === 0) return entry;
      const used = { ...entry.used };
      for (const d of p.values()) {
        used.vcpus += d.vcpus;
        used.memoryMiB += d.memoryMiB;
        used.sandboxes += 1;
      }
      return { ...entry, used };
    });
  }

  assume(node: string, ref: string, d: Demand): void {
    let p = this.pending.get(node);
    if (!p) this.pending.set(node, (p = new Map<string, Demand>()));
    p.set(ref, d);
  }

  /** The reservation is stored (or given up): the registry's copy counts it from now on. */
  forget(node: string, ref: string): void {
    const p = this.pending.get(node);
    p?.delete(ref);
    if (p?.size === 0) this.pending.delete(node);
  }
}
