/**
 * Where a rebuilt actor starts: a persisted snapshot and the stream sequence it covers. The snapshot
 * bucket stores these (src/bus/snapshots.ts) and replay starts from them (src/replay/engine.ts), so the
 * shape lives here, below both.
 */

/** A task's actor as it was at stream sequence `seq` (recovery: from the snapshot bucket). */
export interface StartingPoint {
  seq: number;
  taskId: string;
  sandboxId: string;
  machine: 'sandbox' | 'container';
  instance: string;
  /** Effects invoked before the snapshot: the task's effect numbering (and opIds) continues from here. */
  effects: number;
  /** The actor's persisted snapshot (xstate's `getPersistedSnapshot()`), opaque to everything but the actor. */
  snapshot: unknown;
}
