/**
 * What a task leaving the agent's table gives back (task-runtime.ts `wire`): deleted (its actor done) →
 * its snapshot is removed and its fleet reservation released, once; the agent stopping (every actor
 * stopped) → neither: the sandbox lives on, and the next agent recovers it from its snapshot and keeps its
 * capacity. Before, a graceful stop (systemd's SIGTERM) removed every task's snapshot.
 */
import pino from 'pino';
import { createActor, createMachine } from 'xstate';
import { describe, expect, it } from 'vitest';
import { TaskRuntime } from '../../src/agent/task-runtime.ts';
import { newTask, type Task } from '../../src/agent/task-table.ts';
import { createMetrics } from '../../src/agent/metrics.ts';
import type { RuntimeDeps } from '../../src/agent/deps.ts';

/** A stand-in for the lifecycle machine: what `wire` looks at is the snapshot's status and tags. */
const stub = createMachine({
  initial: 'running',
  states: { running: { on: { delete: 'deleted' } }, deleted: { type: 'final' } },
});

function runtime() {
  const released: string[] = [];
  const removed: string[] = [];
  const rt = new TaskRuntime({
    log: pino({ level: 'silent' }),
    metrics: createMetrics(),
    snapshots: { remove: async (id: string) => void removed.push(id) },
    registration: { release: async ({ id }: { id: string }) => void released.push(id), hold: () => undefined },
  } as unknown as RuntimeDeps);
  const add = (id: string) => {
    const actor = createActor(stub).start();
    const t = { ...newTask({ id, kind: 'sandbox', sandboxId: id, instance: 'i1' }), actor } as unknown as Task;
    rt.wire(t);
    return { t, actor };
  };
  return { rt, add, released, removed };
}

const settle = () => new Promise((r) => setImmediate(r));

describe('a task leaving the table', () => {
  it('deleted: its snapshot goes and its reservation is released, once', async () => {
    const { rt, add, released, removed } = runtime();
    const { actor } = add('a'.repeat(64));
    actor.send({ type: 'delete' });
    await settle();
    expect(rt.tasks.has('a'.repeat(64))).toBe(false);
    expect(released).toEqual(['a'.repeat(64)]);
    expect(removed).toEqual(['a'.repeat(64)]);
  });

  it('the agent stopping: the task keeps its snapshot and its reservation', async () => {
    const { rt, add, released, removed } = runtime();
    const { actor } = add('b'.repeat(64));
    actor.stop();
    await settle();
    expect(rt.tasks.has('b'.repeat(64))).toBe(true);
    expect(released).toEqual([]);
    expect(removed).toEqual([]);
  });
});
