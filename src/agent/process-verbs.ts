/**
 * The Task API verbs of a running task's processes besides start, kill, wait and delete (task-api.ts):
 * exec, pause, resume, resize, closeIO, update (answered by the task's machine, through the journal) and
 * stats (a read from the guest, answered at once).
 */
import { err } from '../errors.ts';
import type { LATER } from '../bus/serve.ts';
import { parseExec } from '../bus/exec-requests.ts';
import { obj, parseProcessRef, parseResize, taskId } from '../bus/task-requests.ts';
import { hasTag, type LifecycleEvent } from '../machines/index.ts';
import { updateLimits } from '../kata/index.ts';
import type { TaskRuntime } from './task-runtime.ts';
import type { ReplyTo } from './task-table.ts';

type Command = (
  body: unknown,
  reply: ReplyTo,
  make: (rid: string, at: number) => LifecycleEvent,
) => Promise<typeof LATER>;

export function processVerbs(rt: TaskRuntime, command: Command) {
  return {
    exec: (body: unknown, reply: ReplyTo) => {
      const x = parseExec(body);
      return command(body, reply, (rid, at) => ({ type: 'exec', rid, at, execId: x.execId, process: x.process }));
    },
    pause: (body: unknown, reply: ReplyTo) => command(body, reply, (rid, at) => ({ type: 'pause', rid, at })),
    resume: (body: unknown, reply: ReplyTo) => command(body, reply, (rid, at) => ({ type: 'resume', rid, at })),
    resize: (body: unknown, reply: ReplyTo) => {
      const r = parseResize(body);
      return command(body, reply, (rid, at) => ({ type: 'resize', rid, at, ...r }));
    },
    closeIO: (body: unknown, reply: ReplyTo) => {
      const { execId } = parseProcessRef(body);
      return command(body, reply, (rid, at) => ({ type: 'closeIO', rid, at, execId }));
    },
    update: (body: unknown, reply: ReplyTo) => {
      const limits = updateLimits(obj(body, 'request').resources);
      return command(body, reply, (rid, at) => ({ type: 'update', rid, at, limits }));
    },
    /** containerd's Stats: the container's cgroup v2 counters in the guest. */
    stats: async (body: unknown) => {
      const t = rt.tasks.lookup(taskId(body));
      if (!hasTag(t.actor, 'running')) throw err.precondition(`cannot read stats of task ${t.id}: it is not running`);
      return rt.workers.read('hypervisor', 'stats', { sandboxId: t.sandboxId, containerId: t.id });
    },
  };
}
