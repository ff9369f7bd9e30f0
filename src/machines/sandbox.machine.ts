/** A sandbox (PodSandbox or SingleContainer): owns its VM, VMM user and rootfs; its task is the VM's init process. */
import { lifecycleMachine } from './lifecycle.ts';
export const sandboxMachine = lifecycleMachine('sandbox');
