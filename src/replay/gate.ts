/**
 * Where a replayed machine's effects wait: instead of doing anything, an effect asks the gate for its
 * recorded outcome, which the replay engine hands over when it reaches that record in the log. When
 * the log runs out, recovery opens the gate (`goLive`): waiting effects, and every later one, run
 * for real, with the same opIds the crashed agent used (the effect's index in the task's sequence).
 */
import type { WireError } from '../errors.ts';

export type Outcome = { ok: true; output: unknown } | { ok: false; error: WireError };

interface Waiting {
  taskId: string;
  name: string;
  settle: (o: Outcome | 'live') => void;
  /** True once the state that invoked the effect was left: its outcome no longer matters to the machine. */
  left: () => boolean;
}

const never = () => false;

/** What handing over an outcome did: an effect took it, or the effect had been abandoned by its state. */
export type Delivery = 'taken' | 'abandoned' | false;

export class EffectGate {
  private waiting: Waiting[] = [];
  private isLive = false;
  private asked = new Map<string, Set<() => void>>();

  get live(): boolean {
    return this.isLive;
  }

  /** Called by an effect: its recorded outcome, or 'live' once the gate is open. */
  wait(taskId: string, name: string, signal?: AbortSignal): Promise<Outcome | 'live'> {
    if (this.isLive) return Promise.resolve('live');
    const left = signal ? () => signal.aborted : never;
    return new Promise<Outcome | 'live'>((settle) => this.ask(taskId, name, settle, left));
  }

  /**
   * As `wait`, with a callback: `settle` runs inside `deliver` (or `goLive`), synchronously. Offline replay's
   * effects take their outcomes this way (gated-logic.ts): no promise, no microtask per effect.
   */
  ask(taskId: string, name: string, settle: (o: Outcome | 'live') => void, left: () => boolean = never): void {
    if (this.isLive) return settle('live');
    this.waiting.push({ taskId, name, settle, left });
    const asked = this.asked.get(taskId);
    if (asked) for (const f of [...asked]) f();
  }

  /** Calls `f` each time an effect of `taskId` asks (the replay's signal that an outcome was taken). */
  onAsk(taskId: string, f: () => void): () => void {
    let set = this.asked.get(taskId);
    if (!set) this.asked.set(taskId, (set = new Set()));
    set.add(f);
    return () => {
      set.delete(f);
      if (set.size === 0) this.asked.delete(taskId);
    };
  }

  /**
   * Hand a recorded outcome to the oldest effect of that task and name that is waiting. Effects ask
   * as soon as their state invokes them (synchronously), so one that is not waiting never asked: false.
   * An effect whose state was left meanwhile still gets its outcome (live, its reply was journaled
   * too), but the machine no longer listens: `abandoned`.
   */
  deliver(taskId: string, name: string, outcome: Outcome): Delivery {
    const k = this.waiting.findIndex((w) => w.taskId === taskId && w.name === name);
    if (k < 0) return false;
    const w = this.waiting.splice(k, 1)[0]!;
    const left = w.left(); // before settling: a taken outcome may lead the machine out of the state
    w.settle(outcome);
    return left ? 'abandoned' : 'taken';
  }

  /** Effects that asked and got nothing yet (what was in flight when the log ends). */
  pending(): { taskId: string; name: string }[] {
    return this.waiting.map(({ taskId, name }) => ({ taskId, name }));
  }

  goLive(): void {
    this.isLive = true;
    for (const w of this.waiting.splice(0)) w.settle('live');
  }
}
