/**
 * A task's actor as it was at stream sequence `seq`: a replay starting point (recovery restores it
 * from the snapshot bucket, then replays only the log after it).
 */
export interface StartingPoint {
  seq: number;
  taskId: string;
  sandboxId: string;
  machine: 'sandbox' | 'container';
  instance: string;
  /** Effects invoked before the snapshot: the task's effect numbering (and opIds) continues from here. */
  effects: number;
  /** The actor's persisted snapshot (xstate's `getPersistedSnapshot()`), opaque here. */
  snapshot: unknown;
}
