/**
 * Placement (pure): which nodes may take a sandbox, best first. Filters: state `ready`, every
 * requested label equal on the node, room for one more sandbox of the demand. Order by the node's
 * headroom after placing it: the smallest remaining fraction of capacity over vCPUs, memory and
 * sandbox slots (the dimension that runs out first).
 * - `spread`: most headroom first (sandboxes spread evenly, relative to each node's size);
 * - `binpack`: least headroom first (fill a node before using the next).
 * Ties go to the node name in ascending order, so the result is deterministic.
 */
import { fits, free, shortfall, type Demand } from './capacity.ts';
import type { NodeEntry } from './types.ts';

export type Policy = 'spread' | 'binpack';
export const POLICIES: readonly Policy[] = ['spread', 'binpack'];

export interface PlacementRequest extends Demand {
  /** Node labels the sandbox requires (all must be equal). */
  labels: Readonly<Record<string, string>>;
}

type Placeable = Pick<NodeEntry, 'node' | 'state' | 'labels' | 'capacity' | 'used'>;

export const labelsMatch = (want: Readonly<Record<string, string>>, have: Readonly<Record<string, string>>): boolean =>
  Object.entries(want).every(([k, v]) => Object.hasOwn(have, k) && have[k] === v);

/** The fraction of capacity left after placing `d`, in the dimension that has least left. */
export function headroom(e: Pick<NodeEntry, 'capacity' | 'used'>, d: Demand): number {
  const f = free(e);
  const frac = (left: number, cap: number) => (cap > 0 ? left / cap : 0);
  return Math.min(
    frac(f.vcpus - d.vcpus, e.capacity.vcpus),
    frac(f.memoryMiB - d.memoryMiB, e.capacity.memoryMiB),
    frac(f.sandboxes - 1, e.capacity.sandboxes),
  );
}

/** Candidate node names, best first (empty: no node can take it; see {@link whyUnplaceable}). */
export function place(request: PlacementRequest, nodes: readonly Placeable[], policy: Policy): string[] {
  const ok = nodes.filter((n) => n.state === 'ready' && labelsMatch(request.labels, n.labels) && fits(n, request));
  const scored = ok.map((n) => ({ node: n.node, h: headroom(n, request) }));
  const sign = policy === 'spread' ? -1 : 1;
  scored.sort((a, b) => (a.h !== b.h ? sign * (a.h - b.h) : a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  return scored.map((s) => s.node);
}

/** Why no node can take the request: counts per reason, for the ResourceExhausted message. */
export function whyUnplaceable(request: PlacementRequest, nodes: readonly Placeable[]): string {
  const notReady = nodes.filter((n) => n.state !== 'ready');
  const ready = nodes.filter((n) => n.state === 'ready');
  const labelMiss = ready.filter((n) => !labelsMatch(request.labels, n.labels));
  const full = ready.filter((n) => labelsMatch(request.labels, n.labels) && !fits(n, request));
  const want = `${request.vcpus} vCPUs, ${request.memoryMiB} MiB${
    Object.keys(request.labels).length
      ? `, labels ${Object.entries(request.labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(',')}`
      : ''
  }`;
  const parts = [`${nodes.length} nodes`];
  if (notReady.length) parts.push(`${notReady.length} not ready (${summary(notReady.map((n) => n.state))})`);
  if (labelMiss.length) parts.push(`${labelMiss.length} without the labels`);
  if (full.length)
    parts.push(`${full.length} full${full.length === 1 ? ` (${full[0]!.node}: ${shortfall(full[0]!, request)})` : ''}`);
  return `no node can take a sandbox of ${want}: ${parts.join(', ')}`;
}

function summary(xs: string[]): string {
  const m = new Map<string, number>();
  for (const x of xs) m.set(x, (m.get(x) ?? 0) + 1);
  return [...m].map(([k, n]) => `${n} ${k}`).join(', ');
}
