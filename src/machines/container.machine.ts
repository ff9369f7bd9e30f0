/** A pod container inside a sandbox's VM: owns its rootfs mount and its bind into the sandbox's share. */
import { lifecycleMachine } from './lifecycle.ts';
export const containerMachine = lifecycleMachine('container');
