/** The task events a shim owes containerd (topics and fields of `containerd.events`), before encoding. */
import type { StdioPaths } from './stdio.ts';

interface Exited {
  containerId: string;
  /** The exec id, or the container id for its init process. */
  id: string;
  pid: number;
  exitStatus: number;
  exitedAt: number;
}

export type ShimEvent =
  | {
      topic: '/tasks/create';
      containerId: string;
      bundle: string;
      rootfs: { type: string; source: string; target?: string; options: string[] }[];
      io: StdioPaths;
      pid: number;
    }
  | { topic: '/tasks/start'; containerId: string; pid: number }
  | ({ topic: '/tasks/exit' } & Exited)
  | ({ topic: '/tasks/delete' } & Exited)
  | { topic: '/tasks/exec-added'; containerId: string; execId: string }
  | { topic: '/tasks/exec-started'; containerId: string; execId: string; pid: number }
  | { topic: '/tasks/paused' | '/tasks/resumed' | '/tasks/oom'; containerId: string };
