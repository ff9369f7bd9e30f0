/**
 * The fleet's registry in the simulator: one NodeEntry per node, every change made by the REAL pure
 * functions the registry's compare-and-swap applies (fleet/capacity.ts `withReservation`,
 * `withoutReservation`), candidates ordered by the REAL placement (fleet/placement.ts `place`). The
 * controller's flow around them (reserve on the best candidate, create there, release on a refusal,
 * keep on silence, join its own earlier reservation on a repeat) and the agents' pruning of
 * reservations they do not hold are the simulator's drivers: the
 * FleetController class itself runs on NATS KV and a watch, which are not simulated.
 */
import { err } from '../src/errors.ts';
import { withReservation, withoutReservation, withoutUnheld } from '../src/fleet/capacity.ts';
import { place } from '../src/fleet/placement.ts';
import type { NodeEntry } from '../src/fleet/types.ts';

export const DEMAND = { vcpus: 1, memoryMiB: 256 };

export class SimRegistry {
  readonly entries = new Map<string, NodeEntry>();
  readonly violations: string[] = [];

  add(node: string, sandboxes: number): void {
    this.entries.set(node, {
      node,
      state: 'ready',
      labels: {},
      capacity: { vcpus: sandboxes * 2, memoryMiB: sandboxes * 512, sandboxes },
      used: { vcpus: 0, memoryMiB: 0, sandboxes: 0 },
      heartbeatAt: 0,
      version: 'sim',
      reservations: {},
      registeredAt: 0,
    });
  }

  private put(e: NodeEntry): void {
    const c = e.capacity;
    if (e.used.sandboxes > c.sandboxes || e.used.vcpus > c.vcpus || e.used.memoryMiB > c.memoryMiB)
      this.violations.push(`node ${e.node} past its capacity: ${JSON.stringify(e.used)} of ${JSON.stringify(c)}`);
    this.entries.set(e.node, e);
  }

  /** Where `id` is reserved, by whom. */
  holder(id: string): { node: string; ref: string } | undefined {
    for (const e of this.entries.values())
      if (Object.hasOwn(e.reservations, id)) return { node: e.node, ref: e.reservations[id]!.ref };
    return undefined;
  }

  /** The best node that takes the reservation (ResourceExhausted when none does). */
  reserve(id: string, ref: string, now: number): string {
    const nodes = [...this.entries.values()];
    for (const node of place({ ...DEMAND, labels: {} }, nodes, 'spread')) {
      try {
        const next = withReservation(this.entries.get(node)!, { id, ref, ...DEMAND }, now);
        if (next) this.put(next);
        return node;
      } catch (e) {
        if ((e as { code?: string }).code !== 'ResourceExhausted') throw e;
      }
    }
    throw err.exhausted(`no node can take ${id}`);
  }

  release(node: string, id: string, ref?: string): void {
    const e = this.entries.get(node);
    const next = e && withoutReservation(e, id, ref);
    if (next) this.put(next);
  }

  /**
   * What the node's agent does with reservations of sandboxes it does not hold (`live`) made before
   * `before` (agent-registration.ts: at its start with a 60 s grace, on heartbeats past 300 s): a
   * controller that died between its reservation and its create leaves one.
   */
  prune(node: string, live: Iterable<string>, before: number): void {
    const e = this.entries.get(node);
    const next = e && withoutUnheld(e, new Map([...live].map((id) => [id, true])), before);
    if (next && next !== e) this.put(next);
  }

  /** Reservations still held (but those of `except`). */
  leftovers(except: ReadonlySet<string> = new Set()): string[] {
    return [...this.entries.values()].flatMap((e) =>
      Object.keys(e.reservations)
        .filter((id) => !except.has(id))
        .map((id) => `reservation ${id} on ${e.node}`),
    );
  }
}
