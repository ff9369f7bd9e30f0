/**
 * The span of one effect a task's machine runs live (effects.ts): a create step, a compensation, a
 * running task's act or timer. Named `effect.<name>` with `:` as `.` (`effect.mountRootfs`,
 * `effect.undo.unmountAll`, `effect.act.pause`), child of the request that led to it (or of `recovery`),
 * parent of the worker ops it sends. Effects replay takes from the log get none: they do not run.
 */
import { inSpan, tracing } from '../util/trace.ts';

export function inEffectSpan<T>(name: string, taskId: string, fn: () => Promise<T>): Promise<T> {
  if (!tracing()) return fn();
  return inSpan(`effect.${name.replaceAll(':', '.')}`, fn, {
    attributes: {
      'corral.effect': name,
      'corral.task_id': taskId,
      ...(name.startsWith('undo:') ? { 'corral.compensation': true } : {}),
    },
  });
}
