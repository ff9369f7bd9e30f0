/**
 * The real effects of one task: typed Worker API calls (worker-client.ts), each with an opId and a
 * deadline, and the write-ahead journal around each (the outcome is appended to the event log
 * before the machine sees it).
 */
import { CorralError, ensureError, fromWire } from '../errors.ts';
import type { EventAppender } from '../bus/eventlog.ts';
import type { Compensation, OpArgs, OpName, OpResult, Step, StepResults, WorkerKind } from '../domain/ops.ts';
import { effectName, type Effects, type StepOutputs } from '../machines/index.ts';
import type { CreatePlan, RunAct } from '../domain/task.ts';
import type { CreateRules, SandboxContext } from './create-rules.ts';
import type { WorkerClient } from './worker-client.ts';
import type { EffectGate } from '../replay/gate.ts';
import { inEffectSpan } from './effect-span.ts';
import { appendStored } from './append-stored.ts';

/** Deadlines per effect, ms. Boot is long: TCG guests take seconds; KVM fallback adds its probe. */
export const DEADLINES = {
  mount: 30_000,
  user: 30_000,
  network: 30_000,
  boot: 180_000,
  claim: 10_000,
  process: 15_000,
  compensate: 60_000,
} as const;

/**
 * A named point on the effect path (`before:<effect>`, `during:<effect>`: done by the worker, not yet
 * journaled, `after:<effect>`). Production passes none; the test switch composes in one that ends the
 * process there (agent/crash-points.ts).
 */
export type Probe = (point: string) => void;

export interface EffectDeps {
  workers: WorkerClient;
  rules: CreateRules;
  events: EventAppender;
  probe?: Probe;
  /** Time each step took, for the create-latency metric. */
  observeStep?: (step: string, ms: number, ok: boolean) => void;
  /** An outcome's append failed and is tried again (for the log). */
  onOutcomeRetry?: (e: CorralError, taskId: string) => void;
}

/** One effect's worker calls: the k-th gets opId `<instance>:<n>.<k>:<op>`. */
type Call = <K extends WorkerKind, O extends OpName<K>>(
  kind: K,
  op: O,
  args: OpArgs<K, O>,
  deadlineMs: number,
  signal: AbortSignal,
) => Promise<OpResult<K, O>>;

export function taskEffects(
  d: EffectDeps,
  task: { id: string; sandboxId: () => string; instance: string; sandbox: () => SandboxContext | undefined },
  gate?: EffectGate,
  effectsFrom = 0,
): Effects & { effectCount: () => number } {
  // opIds are `<instance>:<n>.<k>:<op>`: n counts this task's effects, k the worker calls inside one.
  // Replay after a crash invokes the same effects in the same order, so an effect that was in flight
  // is re-issued with the opId it had, and the worker answers with its first outcome.
  let effects = effectsFrom;
  const callsOf = (n: number): Call => {
    let k = 0;
    return (kind, op, args, deadlineMs, signal) =>
      d.workers.call(kind, op, args, { opId: `${task.instance}:${n}.${k++}:${op}`, deadlineMs, signal });
  };
  /**
   * Run an effect (or take its recorded outcome while replaying); a live outcome is stored in the log
   * before the machine has it (append-stored.ts: tried again until stored, under one Nats-Msg-Id).
   */
  const journaled = async <T>(name: string, signal: AbortSignal, f: (c: Call) => Promise<T>): Promise<T> => {
    const n = effects++;
    if (gate) {
      const recorded = await gate.wait(task.id, name, signal);
      if (recorded !== 'live') {
        if (recorded.ok) return recorded.output as T;
        throw fromWire(recorded.error);
      }
    }
    d.probe?.(`before:${name}`);
    const t0 = performance.now();
    let outcome: { ok: true; output: T } | { ok: false; error: CorralError };
    try {
      outcome = { ok: true, output: await inEffectSpan(name, task.id, () => f(callsOf(n))) };
      d.probe?.(`during:${name}`);
    } catch (e) {
      outcome = { ok: false, error: ensureError(e) };
    }
    d.observeStep?.(name, performance.now() - t0, outcome.ok);
    const data = outcome.ok
      ? { taskId: task.id, effect: name, ok: true, output: outcome.output }
      : { taskId: task.id, effect: name, ok: false, error: outcome.error.toWire() };
    await appendStored(d.events, task.sandboxId(), 'input', data, {
      msgId: `${task.instance}:${n}:${name}`,
      signal,
      onRetry: (e) => d.onOutcomeRetry?.(e, task.id),
      share: 'join', // with the state record (and stepDone) before it: one message, under this id (eventlog.ts Share)
    });
    if (!outcome.ok) throw outcome.error;
    d.probe?.(`after:${name}`);
    return outcome.output;
  };

  const runStep = (
    call: Call,
    step: Step,
    results: StepOutputs,
    signal: AbortSignal,
  ): Promise<StepResults[Step['kind']]> => {
    switch (step.kind) {
      case 'mountRootfs':
        return call('mount', 'mountRootfs', step.args, DEADLINES.mount, signal);
      case 'mkdir':
        return call('mount', 'mkdir', step.args, DEADLINES.mount, signal);
      case 'bind':
        return call('mount', 'bind', step.args, DEADLINES.mount, signal);
      case 'createUser':
        return call('hypervisor', 'createUser', step.args, DEADLINES.user, signal);
      case 'createNetns':
        return call('network', 'createNetns', step.args, DEADLINES.network, signal);
      case 'setupNetwork':
        return call('network', 'setup', step.args, DEADLINES.network, signal);
      case 'claimVm':
        return call('hypervisor', 'claim', step.args, DEADLINES.claim, signal);
      case 'boot': {
        const { bootTimeoutMs, ...spec } = step.args;
        const user = results.createUser;
        const net = results.setupNetwork;
        const network = net ? { network: { netns: net.netns, nics: net.nics, routes: net.routes } } : {};
        const boot = { ...spec, ...(user ? { user, runDir: user.runtimeDir } : {}), ...network };
        return call('hypervisor', 'boot', boot, bootTimeoutMs ?? DEADLINES.boot, signal);
      }
    }
  };

  /** A running task's act (machines/run-acts.ts) as its worker op. */
  const runAct = async (
    call: Call,
    input: { id: string; plan: CreatePlan; act: RunAct },
    signal: AbortSignal,
  ): Promise<{ guestPid?: number }> => {
    const a = input.act;
    const ref = { sandboxId: input.plan.sandboxId, containerId: input.id };
    const t = DEADLINES.process;
    switch (a.op) {
      case 'execStart': {
        const { stdin, ...proc } = a.process;
        const r = await call('hypervisor', 'exec', { ...ref, ...proc, execId: a.execId, stdin }, t, signal);
        return { guestPid: r.guestPid };
      }
      case 'execSignal':
        await call('hypervisor', 'signal', { ...ref, execId: a.execId, signal: a.signal, all: a.all }, t, signal);
        return {};
      case 'pause':
      case 'resume': {
        // A sandbox's pause freezes its whole guest (every container); a pod container's, its own cgroup.
        const target = input.plan.type === 'pod_container' ? ref : { sandboxId: ref.sandboxId };
        await call('hypervisor', a.op, target, t, signal);
        return {};
      }
      case 'resize':
        await call('hypervisor', 'resize', { ...ref, execId: a.execId, rows: a.rows, cols: a.cols }, t, signal);
        return {};
      case 'closeIO':
        await call('hypervisor', 'closeStdin', { ...ref, execId: a.execId }, t, signal);
        return {};
      case 'update':
        await call('hypervisor', 'update', { ...ref, limits: a.limits }, t, signal);
        return {};
    }
  };

  const compensate = async (call: Call, c: Compensation, signal: AbortSignal): Promise<unknown> => {
    switch (c.kind) {
      case 'unmountAll':
        return call('mount', 'unmountAll', c.args, DEADLINES.compensate, signal);
      case 'removeUser':
        return call('hypervisor', 'removeUser', c.args, DEADLINES.compensate, signal);
      case 'stopVm':
        return call('hypervisor', 'stop', c.args, DEADLINES.compensate, signal);
      case 'teardownNetwork':
        return call('network', 'teardown', c.args, DEADLINES.compensate, signal);
      case 'removeNetns':
        return call('network', 'removeNetns', c.args, DEADLINES.compensate, signal);
      case 'removeTree': {
        // Pod containers' binds may still sit inside a sandbox dir: release them, deepest first.
        const { mounts } = await d.workers.read('mount', 'scan', {});
        const path = c.args.path;
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
    validate: (req, signal) => journaled('validate', signal, () => d.rules.validate(req)),
    configure: (input, signal) =>
      journaled('configure', signal, () => d.rules.configure(input.request, input.validated, task.sandbox())),
    runStep: (input, signal) =>
      journaled(effectName('runStep', input), signal, (call) => runStep(call, input.step, input.results, signal)),
    startProcess: (input, signal) =>
      journaled('startProcess', signal, (call) =>
        call(
          'hypervisor',
          'startProcess',
          // Plans recorded before issue 8 have no `setup`: the process starts with its rootfs only.
          { sandboxId: input.plan.sandboxId, containerId: input.id, ...input.plan.process, ...input.plan.setup },
          DEADLINES.process,
          signal,
        ),
      ),
    signal: (input, signal) =>
      journaled('signal', signal, (call) =>
        call(
          'hypervisor',
          'signal',
          { sandboxId: input.plan.sandboxId, containerId: input.id, signal: input.signal, all: input.all },
          DEADLINES.process,
          signal,
        ),
      ),
    act: (input, signal) => journaled(effectName('act', input), signal, (call) => runAct(call, input, signal)),
    compensate: (c, signal) => journaled(effectName('compensate', c), signal, (call) => compensate(call, c, signal)),
    sleep: (ms, signal) =>
      journaled(
        effectName('backoff', { ms }),
        signal,
        () =>
          new Promise<void>((resolve, reject) => {
            const t = setTimeout(resolve, ms);
            const cancel = () => {
              clearTimeout(t);
              reject(new CorralError('Cancelled', 'timer cancelled'));
            };
            signal.addEventListener('abort', cancel, { once: true });
          }),
      ),
  };
}
