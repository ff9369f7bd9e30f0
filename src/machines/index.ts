export { sandboxMachine } from './sandbox.machine.ts';
export { containerMachine } from './container.machine.ts';
export { coordinatorMachine, type CoordinatorInput, type CoordinatorOutput } from './coordinator.machine.ts';
export { compensationOf } from './compensation.ts';
export {
  stateName,
  hasTag,
  upgradeSnapshot,
  type LifecycleTag,
  type KillRequest,
  type LifecycleEvent,
  type LifecycleInput,
  type LifecycleContext,
  type LifecycleActor,
  type LifecycleMachine,
  type StepOutputs,
} from './lifecycle.ts';
export {
  bindEffects,
  effectName,
  provideEffects,
  sharedMachine,
  withEffectLogic,
  type EffectSrc,
  type Effects,
} from './effects.ts';
