/**
 * The node agent's Task API as the shim calls it (docs/api.md): every request carries a fresh `requestId`
 * where it changes something and is sent again across reconnects (bus/task-client.ts), so an agent
 * restarting under a running shim costs a wait, not a failed call. The shim holds no task state of its own.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { taskRequest } from '../bus/task-client.ts';
import type { TaskVerb } from '../bus/subjects.ts';
import type { ContainerStats } from '../domain/ops.ts';
import type { ExecView, TaskView } from '../domain/task.ts';

/** A week: `wait` is held until the process exits; the client re-sends it every 10 s while unanswered. */
const FOREVER_MS = 7 * 24 * 3600_000;
const CALL_MS = 120_000;

export interface Exit {
  exitStatus: number;
  exitedAt: number;
}

export function agentClient(nc: NatsConnection, node: string) {
  const call = <T>(verb: TaskVerb, body: Record<string, unknown>, ms = CALL_MS) =>
    taskRequest<T>(nc, node, verb, body, ms);
  const ex = (execId: string | undefined) => (execId ? { execId } : {});
  return {
    node,
    create: (body: Record<string, unknown>) => call<{ pid: number }>('create', body, 300_000),
    start: (id: string, execId?: string) => call<{ pid: number }>('start', { id, ...ex(execId) }),
    state: (id: string, execId?: string) => call<TaskView | ExecView>('state', { id, ...ex(execId) }),
    kill: (id: string, execId: string | undefined, signal: number, all: boolean) =>
      call('kill', { id, ...ex(execId), signal, all }),
    wait: (id: string, execId?: string) => call<Exit>('wait', { id, ...ex(execId), timeoutMs: 0 }, FOREVER_MS),
    /** The exit within `ms` (a Timeout error past it). */
    waitFor: (id: string, ms: number) => call<Exit>('wait', { id, timeoutMs: ms }, ms + 1000),
    delete: (id: string, execId?: string, ms = 300_000) =>
      call<Exit & { pid: number }>('delete', { id, ...ex(execId) }, ms),
    pids: (id: string) => call<{ pids: { pid: number }[] }>('pids', { id }),
    exec: (body: Record<string, unknown>) => call('exec', body),
    resize: (id: string, execId: string | undefined, width: number, height: number) =>
      call('resize', { id, ...ex(execId), width, height }),
    closeIO: (id: string, execId?: string) => call('closeIO', { id, ...ex(execId) }),
    pause: (id: string) => call('pause', { id }),
    resume: (id: string) => call('resume', { id }),
    update: (id: string, resources: Record<string, unknown>) => call('update', { id, resources }),
    stats: (id: string) => call<ContainerStats>('stats', { id }),
  };
}
export type AgentClient = ReturnType<typeof agentClient>;
