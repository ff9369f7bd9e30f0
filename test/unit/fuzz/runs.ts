/** How many cases each fuzz property runs: 200 by default (CI); `npm run fuzz` sets CORRAL_FUZZ_RUNS=10000. */
export const RUNS = Number(process.env.CORRAL_FUZZ_RUNS ?? 200);

/** A property's time limit, growing with RUNS (vitest's 5 s default is for 200 cases). */
export const TIMEOUT_MS = Math.max(5000, RUNS * 25);
