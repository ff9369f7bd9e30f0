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
}

export const tick = () => new Promise<void>((r) => setImmediate(r));

export class EffectGate {
  private waiting: Waiting[] = [];
  private isLive = false;

  get live(): boolean {
    return this.isLive;
  }

  /** Called by an effect: its recorded outcome, or 'live' once the gate is open. */
  wait(taskId: string, name: string): Promise<Outcome | 'live'> {
    if (this.isLive) return Promise.resolve('live');
    return new Promise((settle) => this.waiting.push({ taskId, name, settle }));
  }

  /** Hand a recorded outcome to the oldest effect of that task and name; waits a few ticks for it to ask. */
  async deliver(taskId: string, name: string, outcome: Outcome, ticks = 20): Promise<boolean> {
    for (let i = 0; i <= ticks; i++) {
      const k = this.waiting.findIndex((w) => w.taskId === taskId && w.name === name);
      if (k >= 0) {
        this.waiting.splice(k, 1)[0]!.settle(outcome);
        return true;
      }
      await tick();
    }
    return false;
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
