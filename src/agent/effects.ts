/**
 * The real effects of one task: NATS requests to the node's workers, each with an opId and a
 * deadline, and the write-ahead journal around each (the outcome is appended to the event log
 * before the machine sees it).
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { CorralError, ensureError, err, fromWire } from '../errors.ts';
import { request } from '../bus/rpc.ts';
import { subjects, type WorkerKind } from '../bus/subjects.ts';
import type { EventLog } from '../bus/eventlog.ts';
import type { Compensation, CreatePlan, Step } from '../domain/task.ts';
import type { Effects } from '../machines/index.ts';
import type { BootSpec, VmmUser } from '../workers/protocol.ts';
import type { CreateRules, SandboxContext } from './create-rules.ts';
import type { Settings } from './settings.ts';
import type { WorkerWatch } from './worker-watch.ts';
import type { EffectGate } from '../replay/gate.ts';

/** Deadlines per effect, ms. Boot is long: TCG guests take seconds; KVM fallback adds its probe. */
export const DEADLINES = { mount: 30_000, user: 30_000, boot: 180_000, process: 15_000, compensate: 60_000 } as const;

export interface EffectDeps {
  nc: NatsConnection;
  settings: Settings;
  rules: CreateRules;
  events: EventLog;
  /**
   * Test-only: SIGKILL this process just before an effect runs (`before:<name>`), after the worker did it but
   * before its outcome is journaled (`during:<name>`), or just after it is journaled (`after:<name>`).
   */
  crashAt?: string;
  /** Fails requests to a worker the moment its process dies. */
  watch?: WorkerWatch;
  /** Time each step took, for the create-latency metric. */
  observeStep?: (step: string, ms: number, ok: boolean) => void;
}

export function taskEffects(
  d: EffectDeps,
  task: { id: string; sandboxId: () => string; instance: string; sandbox: () => SandboxContext | undefined },
  gate?: EffectGate,
  effectsFrom = 0,
): Effects & { effectCount(): number } {
  // opIds are `<instance>:<n>.<k>:<op>`: n counts this task's effects, k the worker calls inside one.
  // Replay after a crash invokes the same effects in the same order, so an effect that was in flight
  // is re-issued with the opId it had, and the worker answers with its first outcome.
  let effects = effectsFrom;
  const call = (n: number) => {
    let k = 0;
    return async <T>(
      kind: WorkerKind,
      op: string,
      body: Record<string, unknown>,
      deadline: number,
      signal: AbortSignal,
    ): Promise<T> => {
      const opId = `${task.instance}:${n}.${k++}:${op}`;
      const deadlineMs = Date.now() + deadline;
      if (signal.aborted) throw err.cancelled(`${op} cancelled`);
      const ac = new AbortController();
      const stop = () => ac.abort();
      signal.addEventListener('abort', stop, { once: true });
      const p = request<T>(
        d.nc,
        subjects.worker(d.settings.node, kind, op),
        { opId, deadlineMs, ...body },
        deadline + 2_000,
        { signal: ac.signal },
      ).finally(() => {
        signal.removeEventListener('abort', stop);
        ac.abort();
      });
      return d.watch ? d.watch.track(kind, op, p, stop) : p;
    };
  };
  type Call = ReturnType<typeof call>;
  /** Run an effect (or take its recorded outcome while replaying) and journal a live outcome before the machine consumes it. */
  const journaled = async <T>(name: string, f: (c: Call) => Promise<T>): Promise<T> => {
    const n = effects++;
    if (gate) {
      const recorded = await gate.wait(task.id, name);
      if (recorded !== 'live') {
        if (recorded.ok) return recorded.output as T;
        throw fromWire(recorded.error);
      }
    }
    if (d.crashAt === `before:${name}`) process.kill(process.pid, 'SIGKILL');
    const t0 = performance.now();
    try {
      const output = await f(call(n));
      if (d.crashAt === `during:${name}`) process.kill(process.pid, 'SIGKILL'); // done by the worker, not journaled
      d.observeStep?.(name, performance.now() - t0, true);
      await d.events.append(task.sandboxId(), 'input', {
        taskId: task.id,
        effect: name,
        ok: true,
        output: output as never,
      });
      if (d.crashAt === `after:${name}`) process.kill(process.pid, 'SIGKILL');
      return output;
    } catch (e) {
      const ce = ensureError(e);
      d.observeStep?.(name, performance.now() - t0, false);
      await d.events
        .append(task.sandboxId(), 'input', { taskId: task.id, effect: name, ok: false, error: ce.toWire() as never })
        .catch(() => {});
      throw ce;
    }
  };

  const runStep = (
    call: Call,
    step: Step,
    plan: CreatePlan,
    results: Record<string, unknown>,
    signal: AbortSignal,
  ): Promise<unknown> => {
    const a = step.args;
    switch (step.kind) {
      case 'mountRootfs':
        return call('mount', 'mountRootfs', { target: a.target, mounts: a.mounts }, DEADLINES.mount, signal);
      case 'mkdir':
        return call('mount', 'mkdir', { path: a.path, mode: a.mode }, DEADLINES.mount, signal);
      case 'bind':
        return call(
          'mount',
          'bind',
          { source: a.source, target: a.target, readonly: a.readonly },
          DEADLINES.mount,
          signal,
        );
      case 'createUser':
        return call('hypervisor', 'createUser', { sandboxId: plan.sandboxId }, DEADLINES.user, signal);
      case 'boot': {
        const user = results.createUser as VmmUser | undefined;
        const spec = { ...(a as unknown as BootSpec), user, runDir: user ? user.runtimeDir : (a.runDir as string) };
        const deadline = typeof a.bootTimeoutMs === 'number' ? a.bootTimeoutMs : DEADLINES.boot;
        return call('hypervisor', 'boot', spec as unknown as Record<string, unknown>, deadline, signal);
      }
    }
  };

  const compensate = async (call: Call, c: Compensation, signal: AbortSignal): Promise<unknown> => {
    const a = c.args;
    switch (c.kind) {
      case 'unmountAll':
        return call('mount', 'unmountAll', { target: a.target, removeDir: a.removeDir }, DEADLINES.compensate, signal);
      case 'removeUser':
        return call(
          'hypervisor',
          'removeUser',
          a.user === undefined ? { sandboxId: a.sandboxId } : { user: a.user, uid: a.uid },
          DEADLINES.compensate,
          signal,
        );
      case 'stopVm':
        return call('hypervisor', 'stop', { sandboxId: a.sandboxId }, DEADLINES.compensate, signal);
      case 'removeTree': {
        // Pod containers' binds may still sit inside a sandbox dir: release them, deepest first.
        const { mounts } = await request<{ mounts: { target: string }[] }>(
          d.nc,
          subjects.worker(d.settings.node, 'mount', 'scan'),
          {},
          10_000,
        );
        const path = String(a.path);
        const inside = mounts
          .map((m) => m.target)
          .filter((t) => t === path || t.startsWith(path + '/'))
          .sort((x, y) => y.length - x.length);
        for (const target of inside) await call('mount', 'unmountAll', { target }, DEADLINES.compensate, signal);
        return call('mount', 'removeTree', { path }, DEADLINES.compensate, signal);
      }
    }
  };

  return {
    effectCount: () => effects,
    validate: (req) => journaled('validate', () => d.rules.validate(req)),
    configure: (input) =>
      journaled('configure', () => d.rules.configure(input.request, input.validated, task.sandbox())),
    runStep: (input, signal) =>
      journaled(input.step.kind, (call) => runStep(call, input.step, input.plan, input.results, signal)),
    startProcess: (input, signal) =>
      journaled('startProcess', (call) =>
        call(
          'hypervisor',
          'startProcess',
          { sandboxId: input.plan.sandboxId, containerId: input.id, ...input.plan.process },
          DEADLINES.process,
          signal,
        ),
      ),
    signal: (input, signal) =>
      journaled('signal', (call) =>
        call(
          'hypervisor',
          'signal',
          { sandboxId: input.plan.sandboxId, containerId: input.id, signal: input.signal },
          DEADLINES.process,
          signal,
        ),
      ),
    compensate: (c, signal) => journaled(`undo:${c.kind}`, (call) => compensate(call, c, signal)),
    sleep: (ms, signal) =>
      journaled(
        'timer',
        () =>
          new Promise<void>((resolve, reject) => {
            const t = setTimeout(resolve, ms);
            signal.addEventListener(
              'abort',
              () => {
                clearTimeout(t);
                reject(new CorralError('Cancelled', 'timer cancelled'));
              },
              { once: true },
            );
          }),
      ),
  };
}
