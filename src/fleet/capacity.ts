/**
 * Pure arithmetic on a registry entry: free capacity, and the entry after a reservation is added or
 * removed. Every registry write that changes `used` goes through these inside one compare-and-swap
 * (registry.ts), so `used` is always the sum of `reservations` and never exceeds `capacity`.
 */
import { err } from '../errors.ts';
import type { NodeEntry, Reservation, Resources } from './types.ts';

/** A sandbox's demand on a node. */
export interface Demand {
  vcpus: number;
  memoryMiB: number;
}

export interface ReserveRequest extends Demand {
  /** The task id (one sandbox). */
  id: string;
  /** The writer's reference (see {@link Reservation.ref}). */
  ref: string;
}

export const free = (e: Pick<NodeEntry, 'capacity' | 'used'>): Resources => ({
  vcpus: e.capacity.vcpus - e.used.vcpus,
  memoryMiB: e.capacity.memoryMiB - e.used.memoryMiB,
  sandboxes: e.capacity.sandboxes - e.used.sandboxes,
});

/** What is missing for one more sandbox of this demand, or undefined when it fits. */
export function shortfall(e: Pick<NodeEntry, 'capacity' | 'used'>, d: Demand): string | undefined {
  const f = free(e);
  const miss: string[] = [];
  if (f.sandboxes < 1) miss.push(`sandboxes ${e.used.sandboxes}/${e.capacity.sandboxes}`);
  if (d.vcpus > f.vcpus) miss.push(`${d.vcpus} vCPUs wanted, ${Math.max(0, f.vcpus)} free`);
  if (d.memoryMiB > f.memoryMiB) miss.push(`${d.memoryMiB} MiB wanted, ${Math.max(0, f.memoryMiB)} free`);
  return miss.length ? miss.join(', ') : undefined;
}

export const fits = (e: Pick<NodeEntry, 'capacity' | 'used'>, d: Demand): boolean => shortfall(e, d) === undefined;

export function sumReservations(rs: Record<string, Pick<Reservation, 'vcpus' | 'memoryMiB'>>): Resources {
  const u = { vcpus: 0, memoryMiB: 0, sandboxes: 0 };
  for (const r of Object.values(rs)) {
    u.vcpus += r.vcpus;
    u.memoryMiB += r.memoryMiB;
    u.sandboxes += 1;
  }
  return u;
}

function checkDemand(d: Demand): void {
  for (const [k, v] of [
    ['vcpus', d.vcpus],
    ['memoryMiB', d.memoryMiB],
  ] as const) {
    if (!Number.isInteger(v) || v < 0)
      throw err.invalid(`reservation ${k} must be a non-negative integer, got ${JSON.stringify(v)}`);
  }
}

/**
 * The entry with one more reservation, or undefined when `r.id` is already reserved with the same
 * `ref` (the writer's own earlier write landed: nothing to do).
 * @throws ResourceExhausted when the node is not ready or the sandbox would exceed its capacity;
 *   AlreadyExists when the id is reserved by another writer.
 */
export function withReservation(e: NodeEntry, r: ReserveRequest, now: number): NodeEntry | undefined {
  checkDemand(r);
  const had = Object.hasOwn(e.reservations, r.id) ? e.reservations[r.id] : undefined;
  if (had) {
    if (had.ref === r.ref) return undefined;
    throw err.exists(`task ${r.id} is already placed on node ${e.node}`);
  }
  if (e.state !== 'ready') throw err.exhausted(`node ${e.node} is ${e.state}: it takes no new sandboxes`);
  const short = shortfall(e, r);
  if (short) throw err.exhausted(`node ${e.node} is full: ${short}`);
  return {
    ...e,
    reservations: { ...e.reservations, [r.id]: { vcpus: r.vcpus, memoryMiB: r.memoryMiB, at: now, ref: r.ref } },
    used: { vcpus: e.used.vcpus + r.vcpus, memoryMiB: e.used.memoryMiB + r.memoryMiB, sandboxes: e.used.sandboxes + 1 },
  };
}

/**
 * The entry with every reservation in `held` present (those missing put back as they were), or the
 * entry itself when none is missing. The agent holds what it created: a reservation that vanished from
 * its entry (a lost update: seen on nats-server 2.9.10 during a stream leader change, where a write
 * with an expected revision overwrote a newer one) comes back with its next heartbeat.
 */
export function withHeld(e: NodeEntry, held: ReadonlyMap<string, Reservation>): NodeEntry {
  const missing = [...held].filter(([id]) => !Object.hasOwn(e.reservations, id));
  if (missing.length === 0) return e;
  const reservations = { ...e.reservations, ...Object.fromEntries(missing) };
  return { ...e, reservations, used: sumReservations(reservations) };
}

/**
 * The entry without the reservations nobody holds: not in `held` and made before `before` (younger ones
 * may belong to a createInline still on its way). What a lost release leaves behind goes this way.
 */
export function withoutUnheld(e: NodeEntry, held: ReadonlyMap<string, unknown>, before: number): NodeEntry {
  const keep = Object.entries(e.reservations).filter(([id, r]) => held.has(id) || r.at >= before);
  if (keep.length === Object.keys(e.reservations).length) return e;
  const reservations = Object.fromEntries(keep);
  return { ...e, reservations, used: sumReservations(reservations) };
}

/**
 * The entry without the reservation of `id`, or undefined when there is none (or, with `ref`, when
 * it was made by someone else: a controller never releases a reservation it did not make).
 */
export function withoutReservation(e: NodeEntry, id: string, ref?: string): NodeEntry | undefined {
  const had = Object.hasOwn(e.reservations, id) ? e.reservations[id] : undefined;
  if (!had || (ref !== undefined && had.ref !== ref)) return undefined;
  const reservations = { ...e.reservations };
  delete reservations[id];
  return {
    ...e,
    reservations,
    used: {
      vcpus: Math.max(0, e.used.vcpus - had.vcpus),
      memoryMiB: Math.max(0, e.used.memoryMiB - had.memoryMiB),
      sandboxes: Math.max(0, e.used.sandboxes - 1),
    },
  };
}
