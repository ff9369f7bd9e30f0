/** Which undo each completed create step pushes on the stack (pure; Kata's deferred cleanups, made explicit). */
import type { Compensation, Step, StepResults } from '../domain/ops.ts';

/** `output` is the step's result as the worker returned it (or as the log recorded it). */
export function compensationOf(step: Step, output: unknown): Compensation | null {
  switch (step.kind) {
    case 'mountRootfs': {
      // Remove the rootfs dir only if this create made it (Kata creates it with mkdir 0711).
      const o = output as Partial<StepResults['mountRootfs']> | undefined;
      return {
        kind: 'unmountAll',
        args: { target: step.args.target, removeDir: o?.createdDir === true },
        undoes: step.kind,
      };
    }
    case 'bind':
      return { kind: 'unmountAll', args: { target: step.args.target, removeDir: true }, undoes: step.kind };
    case 'mkdir': {
      const o = output as Partial<StepResults['mkdir']> | undefined;
      return o?.created === false ? null : { kind: 'removeTree', args: { path: step.args.path }, undoes: step.kind };
    }
    case 'createUser': {
      const o = output as Partial<StepResults['createUser']> | undefined;
      // An answer without a user name cannot be undone by name: remove whatever was made for the sandbox.
      return typeof o?.user === 'string' && typeof o.uid === 'number'
        ? { kind: 'removeUser', args: { user: o.user, uid: o.uid }, undoes: step.kind }
        : { kind: 'removeUser', args: { sandboxId: step.args.sandboxId }, undoes: step.kind };
    }
    case 'createNetns':
      // The path is Corral's name for this sandbox's namespace: one that was there already is a dead
      // worker's first attempt, and is removed as well.
      return { kind: 'removeNetns', args: { netns: step.args.netns }, undoes: step.kind };
    case 'setupNetwork':
      return teardownOf(step);
    case 'claimVm': {
      // A claim that found no idle VM changed nothing; one that took a VM made it the sandbox's.
      const o = output as Partial<StepResults['claimVm']> | undefined;
      return o?.claimed === false
        ? null
        : { kind: 'stopVm', args: { sandboxId: step.args.sandboxId }, undoes: step.kind };
    }
    case 'boot':
      return { kind: 'stopVm', args: { sandboxId: step.args.sandboxId }, undoes: step.kind };
  }
}

const teardownOf = (step: Extract<Step, { kind: 'setupNetwork' }>): Compensation => ({
  kind: 'teardownNetwork',
  args: { sandboxId: step.args.sandboxId, netns: step.args.netns },
  undoes: step.kind,
});

/** Errors after which a worker guarantees it changed nothing (or undid it): no compensation is needed. */
const CLEAN_FAILURES = new Set([
  'InvalidArgument',
  'FailedPrecondition',
  'NotFound',
  'AlreadyExists',
  'NotImplemented',
  'ResourceExhausted',
]);

/**
 * The undo of a step whose outcome is unknown (a timeout, a worker that died before answering): built
 * from the step's arguments alone, since there is no output. Every compensation is idempotent, so
 * undoing something that never happened is harmless; not undoing something that did is a leak.
 */
export function compensationOfFailed(step: Step, error: { code: string }): Compensation | null {
  if (CLEAN_FAILURES.has(error.code)) return null;
  switch (step.kind) {
    case 'mountRootfs':
      return { kind: 'unmountAll', args: { target: step.args.target, removeDir: false }, undoes: step.kind };
    case 'bind':
      return { kind: 'unmountAll', args: { target: step.args.target, removeDir: true }, undoes: step.kind };
    case 'mkdir':
      return { kind: 'removeTree', args: { path: step.args.path }, undoes: step.kind };
    case 'createUser':
      return { kind: 'removeUser', args: { sandboxId: step.args.sandboxId }, undoes: step.kind };
    case 'createNetns':
      return { kind: 'removeNetns', args: { netns: step.args.netns }, undoes: step.kind };
    case 'setupNetwork':
      return teardownOf(step);
    case 'claimVm':
    case 'boot':
      return { kind: 'stopVm', args: { sandboxId: step.args.sandboxId }, undoes: step.kind };
  }
}
