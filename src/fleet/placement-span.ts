/**
 * The span of one fleet placement (`fleet.placement`, inside the controller's `fleet.task.create`
 * server span): the task it places, the node that took it; the reservations and the node's
 * `task.createInline` happen inside it.
 */
import { inSpan, tracing } from '../util/trace.ts';
import type { FleetCreateResult } from './node-create.ts';

export function placementSpan(id: string, place: () => Promise<FleetCreateResult>): Promise<FleetCreateResult> {
  if (!tracing()) return place();
  return inSpan(
    'fleet.placement',
    async (span) => {
      const r = await place();
      span.setAttribute('corral.node', r.node);
      return r;
    },
    { attributes: { 'corral.task_id': id } },
  );
}
