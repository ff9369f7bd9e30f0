/**
 * The simulator's one source of time and chance: a seeded generator (mulberry32) and a discrete-event
 * scheduler over a simulated clock. While a run is on, the global timers and `Date.now` are this
 * scheduler's, so the real code's timers (backoffs, timeouts, deadlines) fire in simulated time.
 *
 * Determinism: every event runs alone, then every microtask it caused runs to completion (the real
 * code only waits on promises that the scheduler's events settle) before the next event is taken. Events
 * due at the same time run in the order the generator picks, so a seed fixes every interleaving.
 */
const realSetImmediate = globalThis.setImmediate;
const realSetTimeout = globalThis.setTimeout;
const realClearTimeout = globalThis.clearTimeout;
const realDateNow = Date.now;

/** mulberry32: small, fast, and the whole state is one 32-bit number. */
export function prng(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Ev {
  at: number;
  tie: number;
  id: number;
  label: string;
  run: () => void;
}

/** A timer handle as Node's timers return it (the real code may `unref()` it). */
class Handle {
  constructor(readonly id: number) {}
  unref(): this {
    return this;
  }
  ref(): this {
    return this;
  }
  hasRef(): boolean {
    return true;
  }
  [Symbol.toPrimitive](): number {
    return this.id;
  }
}

export const EPOCH = Date.UTC(2026, 0, 1);

export class Scheduler {
  now = 0;
  steps = 0;
  private q: Ev[] = [];
  private n = 0;
  private readonly cancelled = new Set<number>();
  /** The last events run, for a failing seed's trace. */
  readonly trace: string[] = [];

  constructor(readonly rand: () => number) {}

  /** A number in [lo, hi). */
  between(lo: number, hi: number): number {
    return lo + Math.floor(this.rand() * (hi - lo));
  }
  chance(p: number): boolean {
    return this.rand() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.rand() * xs.length)]!;
  }

  at(delayMs: number, label: string, run: () => void): number {
    const id = ++this.n;
    this.q.push({ at: this.now + Math.max(0, delayMs), tie: this.rand(), id, label, run });
    return id;
  }
  cancel(id: number): void {
    this.cancelled.add(id);
  }
  note(line: string): void {
    this.trace.push(`${String(this.now).padStart(7)}ms ${line}`);
    if (this.trace.length > 4000) this.trace.splice(0, 2000);
  }
  get pending(): number {
    return this.q.length;
  }

  /** Run events until none is left or `until()` holds; every microtask settles after each event. */
  async run(until: () => boolean, maxSteps: number): Promise<void> {
    while (this.q.length > 0 && !until() && this.steps < maxSteps) {
      let k = 0;
      for (let i = 1; i < this.q.length; i++) {
        const a = this.q[i]!;
        const b = this.q[k]!;
        if (a.at < b.at || (a.at === b.at && a.tie < b.tie)) k = i;
      }
      const ev = this.q.splice(k, 1)[0]!;
      if (this.cancelled.delete(ev.id)) continue;
      this.now = ev.at;
      this.steps++;
      if (ev.label) this.note(ev.label);
      ev.run();
      await settle();
    }
  }

  /** Route the global timers and Date.now through this scheduler until the returned function is called. */
  install(): () => void {
    const g = globalThis as unknown as Record<string, unknown>;
    g.setTimeout = (fn: (...a: unknown[]) => void, ms?: number, ...a: unknown[]) =>
      new Handle(this.at(ms ?? 0, '', () => fn(...a)));
    g.clearTimeout = (h: unknown) => {
      if (h instanceof Handle) this.cancel(h.id);
    };
    Date.now = () => EPOCH + this.now;
    return () => {
      g.setTimeout = realSetTimeout;
      g.clearTimeout = realClearTimeout;
      Date.now = realDateNow;
    };
  }
}

/** Let every microtask queued so far (and those they queue) run. */
export const settle = (): Promise<void> => new Promise((r) => realSetImmediate(r));
