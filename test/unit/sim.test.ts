/**
 * The deterministic simulator (sim/, docs/decisions/0015-simulator.md): a seed replays exactly, and
 * each planted bug is found by a seed that is clean without it.
 */
import { describe, expect, it } from 'vitest';
import { runSeed } from '../../sim/run.ts';
import { MUTATIONS } from '../../sim/faults.ts';

describe('simulator', () => {
  it('replays a seed exactly: the same trace, stats and verdict', async () => {
    for (const seed of [1, 7, 42]) {
      const a = await runSeed(seed);
      const b = await runSeed(seed);
      expect(b.trace).toEqual(a.trace);
      expect(b.stats).toEqual(a.stats);
      expect(b.violations).toEqual(a.violations);
    }
  });

  it.each(MUTATIONS)('finds the planted bug %s within 50 seeds clean without it', async (bug) => {
    let found: number | undefined;
    for (let seed = 1; seed <= 50 && found === undefined; seed++) {
      if ((await runSeed(seed)).violations.length > 0) continue;
      if ((await runSeed(seed, bug)).violations.length > 0) found = seed;
    }
    console.log(`planted ${bug}: found by seed ${found}`);
    expect(found).toBeDefined();
  });
});
