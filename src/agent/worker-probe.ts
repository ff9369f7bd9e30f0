/**
 * Is a worker of this kind still running for the node (it outlived a killed agent)? It answers `__ping`
 * with its pid. A busy worker (adopting its VMs, a burst of mounts, a loaded machine) can answer late, so a
 * Timeout is asked again until the deadline; only "no responders" (nobody subscribed) means none runs.
 * Starting a second worker beside a live one would make two owners of the same mounts and VMs.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { CorralError } from '../errors.ts';
import { request } from '../bus/rpc.ts';
import { subjects } from '../bus/subjects.ts';
import type { WorkerKind } from '../domain/ops.ts';

export type Probe = { pid: number } | { pid: undefined; reason: 'none' | 'silent' };

export async function probeWorker(
  nc: NatsConnection,
  node: string,
  kind: WorkerKind,
  deadlineMs = 15_000,
): Promise<Probe> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    try {
      const r = await request<{ pid: number }>(nc, subjects.worker(node, kind, '__ping'), {}, 1000);
      return { pid: r.pid };
    } catch (e) {
      const timedOut = e instanceof CorralError && e.code === 'Timeout';
      if (!timedOut) return { pid: undefined, reason: 'none' };
      if (Date.now() >= until) return { pid: undefined, reason: 'silent' };
    }
  }
}
