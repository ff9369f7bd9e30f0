/** Timing for the benches: `time` runs a step n times and returns each run's milliseconds; `pct` a percentile. */
export type Time = (n: number, f: (i: number) => Promise<void>) => Promise<number[]>;

export async function time(n: number, f: (i: number) => Promise<void> | void): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await f(i);
    out.push(performance.now() - t);
  }
  return out;
}

/** The p-th percentile (nearest rank) of `xs`. */
export function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}
