/** Fake effects for machine tests: each records its calls and can be told to fail at a given step. */
import { createActor, type AnyActorRef } from 'xstate';
import { err } from '../../src/errors.ts';
import type { Compensation, CreatePlan, CreateTaskRequest, Fact, Reply, Step } from '../../src/domain/task.ts';
import type { BootSpec } from '../../src/domain/ops.ts';
import { provideEffects, type Effects, type LifecycleMachine } from '../../src/machines/index.ts';
import { deferred, within } from './wait.ts';

/** A CreateTaskRequest with containerd's empty defaults; `over` sets the rest. */
export const request = (id = 'sb1', over: Partial<CreateTaskRequest> = {}): CreateTaskRequest => ({
  id,
  bundle: '/b',
  rootfs: [],
  terminal: false,
  stdin: '',
  stdout: '',
  stderr: '',
  checkpoint: '',
  parentCheckpoint: '',
  options: {},
  ...over,
});

/** A boot spec (the fakes never boot: only the sandbox id matters to them). */
export const bootSpec = (sandboxId: string): BootSpec => ({
  sandboxId,
  vcpus: 1,
  memoryMiB: 256,
  kernel: '/k',
  initrd: '/i',
  kernelParams: '',
  machineType: 'microvm',
  accel: 'auto',
  sharedDir: '/s',
  msize9p: 512000,
  runDir: '/r',
});

export const plan = (over: Partial<CreatePlan> = {}): CreatePlan => ({
  type: 'single_container',
  sandboxId: 'sb1',
  bundle: '/b',
  process: { args: ['true'], env: [], cwd: '/', uid: 0, gid: 0, additionalGids: [], terminal: false },
  steps: [
    { phase: 'mounting', kind: 'mountRootfs', args: { target: '/b/rootfs', mounts: [] } },
    { phase: 'mounting', kind: 'bind', args: { source: '/b/rootfs', target: '/run/s/sb1/rootfs' } },
    { phase: 'preparingUser', kind: 'createUser', args: { sandboxId: 'sb1' } },
    { phase: 'booting', kind: 'boot', args: bootSpec('sb1') },
  ],
  ...over,
});

export interface FakeOptions {
  failStep?: Step['kind'];
  /** Code of the step failure. @default Internal (outcome unknown) */
  failCode?: 'Internal' | 'InvalidArgument';
  /** Compensation kinds that fail `times` times (Infinity: always). */
  failCompensation?: { kind: Compensation['kind']; times: number };
  failValidate?: boolean;
  failStart?: boolean;
  /** The signal effect answers only once this resolves. */
  signalHeld?: Promise<unknown>;
  plan?: CreatePlan;
}

export function fakeEffects(opts: FakeOptions = {}) {
  const calls: string[] = [];
  const compensated: Compensation['kind'][] = [];
  let compFailures = 0;
  const fx: Effects = {
    validate: async () => {
      calls.push('validate');
      if (opts.failValidate) throw err.invalid('Missing bundle path');
      return {};
    },
    configure: async () => {
      calls.push('configure');
      return opts.plan ?? plan();
    },
    runStep: async ({ step }) => {
      calls.push(step.kind);
      if (step.kind === opts.failStep)
        throw opts.failCode === 'InvalidArgument'
          ? err.invalid(`${step.kind} failed`)
          : err.internal(`${step.kind} failed`);
      if (step.kind === 'boot') return { pid: 4242 };
      if (step.kind === 'createUser') return { user: 'corral-1', uid: 1001 };
      return { createdDir: true };
    },
    act: async ({ act }) => {
      calls.push(`act:${act.op}`);
      return act.op === 'execStart' ? { guestPid: 77 } : {};
    },
    startProcess: async () => {
      calls.push('startProcess');
      if (opts.failStart) throw err.internal('agent gone');
      return {};
    },
    signal: async ({ signal }) => {
      calls.push(`signal:${signal}`);
      await opts.signalHeld;
      return {};
    },
    compensate: async (c) => {
      calls.push(`undo:${c.kind}`);
      if (opts.failCompensation?.kind === c.kind && compFailures < opts.failCompensation.times) {
        compFailures++;
        throw err.unavailable(`${c.kind} failed`);
      }
      compensated.push(c.kind);
      return {};
    },
    sleep: async () => {
      calls.push('sleep');
    },
  };
  return { fx, calls, compensated };
}

export function run(machine: LifecycleMachine, fx: Effects, id = 'sb1') {
  const emitted: (Reply | Fact)[] = [];
  const actor = createActor(provideEffects(machine, fx), { input: { id, request: request(id), rid: 'r-create' } });
  actor.on('*', (e) => emitted.push(e as Reply | Fact));
  actor.start();
  return { actor, emitted };
}

/**
 * Resolves once `pred` holds for the actor's snapshot (checked on every snapshot it emits);
 * rejects naming its state after `ms`.
 */
export async function until(
  actor: AnyActorRef,
  pred: (value: string) => boolean,
  ms = 3000,
  what = 'its state to match',
): Promise<void> {
  const name = () => {
    const v = actor.getSnapshot().value;
    return typeof v === 'string' ? v : JSON.stringify(v);
  };
  const reached = deferred();
  const check = () => {
    if (pred(name())) reached.resolve();
  };
  const sub = actor.subscribe({ next: check, error: reached.reject });
  try {
    check();
    await within(reached.promise, { timeoutMs: ms, what: () => `${what} (the actor is in ${name()})` });
  } finally {
    sub.unsubscribe();
  }
}
