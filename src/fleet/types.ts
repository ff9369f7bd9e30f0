/**
 * The fleet's data: one registry entry per node (JetStream KV bucket CORRAL_NODES, key = node name)
 * and the resource triples it counts in. docs/api.md ("Fleet") documents every field.
 */
import { err } from '../errors.ts';

/**
 * `ready`: takes new sandboxes. `cordoned`: takes none (operator). `draining`: takes none, its
 * sandboxes are being stopped. `lost`: its heartbeats stopped (set by a controller).
 */
export type NodeState = 'ready' | 'cordoned' | 'draining' | 'lost';
export const NODE_STATES: readonly NodeState[] = ['ready', 'cordoned', 'draining', 'lost'];

/** An amount of node resources: whole vCPUs, MiB of memory, sandboxes (VMs). */
export interface Resources {
  vcpus: number;
  memoryMiB: number;
  sandboxes: number;
}

/** What one sandbox holds on a node (one sandbox slot each). */
export interface Reservation {
  vcpus: number;
  memoryMiB: number;
  /** Epoch ms when it was made. */
  at: number;
  /**
   * Who made it (a controller instance and request, or the agent): a writer whose compare-and-swap
   * outcome is unknown (timeout) recognises its own reservation on re-read, and a controller releases
   * only reservations it made.
   */
  ref: string;
}

export interface NodeEntry {
  node: string;
  state: NodeState;
  /** Placement selectors match these (exact string equality). */
  labels: Record<string, string>;
  capacity: Resources;
  /** Always the sum of {@link reservations} (both change in the same compare-and-swap). */
  used: Resources;
  /** The agent's clock, epoch ms, at its last heartbeat. */
  heartbeatAt: number;
  /** The agent's Corral version. */
  version: string;
  /** The node's hypervisor is simulated (scale tests); shown as such by `corral fleet nodes`. */
  simulated?: boolean;
  /** Reserved sandboxes by task id. */
  reservations: Record<string, Reservation>;
  /** Epoch ms of the first registration. */
  registeredAt: number;
  /** Set with `lost`: when, and the state to return to when heartbeats resume. */
  lostAt?: number;
  lostFrom?: Exclude<NodeState, 'lost'>;
}

/** An entry and the KV revision it was read at (the compare-and-swap token). */
export interface Versioned {
  entry: NodeEntry;
  revision: number;
}

export const ZERO: Readonly<Resources> = Object.freeze({ vcpus: 0, memoryMiB: 0, sandboxes: 0 });

const isObj = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);
const nonNeg = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;

function resources(v: unknown, what: string): Resources {
  if (!isObj(v) || !nonNeg(v.vcpus) || !nonNeg(v.memoryMiB) || !nonNeg(v.sandboxes)) {
    throw err.internal(`registry entry: ${what} must be {vcpus, memoryMiB, sandboxes} of non-negative numbers`);
  }
  return { vcpus: v.vcpus, memoryMiB: v.memoryMiB, sandboxes: v.sandboxes };
}

/**
 * Check a decoded registry value. Entries are written only by Corral; a malformed one is a bug or a
 * foreign writer.
 * @throws Internal naming the bad field.
 */
export function checkEntry(v: unknown): NodeEntry {
  if (!isObj(v)) throw err.internal('registry entry is not a map');
  if (typeof v.node !== 'string' || !v.node) throw err.internal('registry entry: node must be a string');
  const state = NODE_STATES.find((s) => s === v.state);
  if (!state) throw err.internal(`registry entry ${v.node}: unknown state ${JSON.stringify(v.state)}`);
  const labels = isObj(v.labels) ? v.labels : {};
  if (Object.values(labels).some((x) => typeof x !== 'string'))
    throw err.internal(`registry entry ${v.node}: labels must be strings`);
  const reservations = isObj(v.reservations) ? v.reservations : {};
  for (const [id, r] of Object.entries(reservations)) {
    if (!isObj(r) || !nonNeg(r.vcpus) || !nonNeg(r.memoryMiB))
      throw err.internal(`registry entry ${v.node}: reservation ${id} is malformed`);
  }
  return {
    // The optional fields (simulated, lostAt, lostFrom) and any a newer writer added pass through unchecked.
    ...(v as Partial<NodeEntry>),
    node: v.node,
    state,
    labels: labels as Record<string, string>,
    capacity: resources(v.capacity, `${v.node}.capacity`),
    used: resources(v.used, `${v.node}.used`),
    heartbeatAt: nonNeg(v.heartbeatAt) ? v.heartbeatAt : 0,
    version: typeof v.version === 'string' ? v.version : '',
    reservations: reservations as Record<string, Reservation>,
    registeredAt: nonNeg(v.registeredAt) ? v.registeredAt : 0,
  };
}
