/**
 * `npm run sim -- [--seeds N] [--seed S] [--from F] [--json] [--self-test]`: the deterministic simulator
 * (docs/decisions/0015-simulator.md). Runs seeds F..F+N-1 (or the one seed S), each a whole simulated
 * run checked against the invariants (sim/invariants.ts); a failing seed prints the command that
 * repeats it exactly and the last steps of its trace. `--self-test` plants each known bug
 * (sim/faults.ts MUTATIONS) and shows it is found within SELF_TEST_SEEDS seeds. Exits 1 on any
 * violation (or a planted bug not found), 2 on bad arguments.
 */
import { parseArgs } from 'node:util';
import { MUTATIONS } from './faults.ts';
import { runSeed, type RunResult } from './run.ts';

/** Each planted bug must be found within this many seeds. */
export const SELF_TEST_SEEDS = 200;

const HELP = `usage: npm run sim -- [--seeds N] [--seed S] [--from F] [--json] [--self-test]
  --seeds N     run N seeds (default 200), starting at --from (default 1)
  --seed S      run the one seed S and print its trace
  --json        one JSON summary on stdout
  --self-test   plant each known bug and show a seed finds it (within ${SELF_TEST_SEEDS})`;

function args() {
  try {
    const { values } = parseArgs({
      options: {
        seeds: { type: 'string' },
        seed: { type: 'string' },
        from: { type: 'string' },
        json: { type: 'boolean' },
        'self-test': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    const int = (name: string, v: string | undefined, d: number) => {
      if (v === undefined) return d;
      if (!/^\d+$/.test(v)) throw new Error(`--${name} must be a whole number, not ${JSON.stringify(v)}`);
      return Number(v);
    };
    return {
      seeds: int('seeds', values.seeds, 200),
      seed: values.seed === undefined ? undefined : int('seed', values.seed, 0),
      from: int('from', values.from, 1),
      json: values.json === true,
      selfTest: values['self-test'] === true,
      help: values.help === true,
    };
  } catch (e) {
    process.stderr.write(`sim: ${(e as Error).message}\n${HELP}\n`);
    process.exit(2);
  }
}

const repro = (seed: number) => `npm run sim -- --seed ${seed}`;

function report(r: RunResult): void {
  process.stdout.write(`seed ${r.seed}: ${r.violations.length} violation(s)\n`);
  for (const v of r.violations.slice(0, 10)) process.stdout.write(`  ${v}\n`);
  process.stdout.write(`  reproduce: ${repro(r.seed)}\n  last steps:\n`);
  for (const l of r.trace) process.stdout.write(`    ${l}\n`);
}

async function main(): Promise<void> {
  const a = args();
  if (a.help) return void process.stdout.write(`${HELP}\n`);
  const t0 = performance.now();
  if (a.selfTest) {
    const found: { bug: string; seed: number | null; seeds: number; violation?: string }[] = [];
    for (const bug of MUTATIONS) {
      let hit: { bug: string; seed: number | null; seeds: number; violation?: string } = { bug, seed: null, seeds: 0 };
      for (let seed = a.from; seed < a.from + SELF_TEST_SEEDS; seed++) {
        hit = { bug, seed: null, seeds: seed - a.from + 1 };
        if ((await runSeed(seed)).violations.length > 0) continue; // only a seed clean without the bug counts
        const r = await runSeed(seed, bug);
        if (r.violations.length > 0) {
          hit = { ...hit, seed, violation: r.violations[0] };
          break;
        }
      }
      found.push(hit);
      if (!a.json)
        process.stdout.write(
          hit.seed === null
            ? `planted ${bug}: NOT found in ${SELF_TEST_SEEDS} seeds\n`
            : `planted ${bug}: found by seed ${hit.seed} (${hit.seeds} seed(s)): ${hit.violation}\n`,
        );
    }
    const ok = found.every((x) => x.seed !== null);
    const ms = Math.round(performance.now() - t0);
    if (a.json)
      process.stdout.write(`${JSON.stringify({ selfTest: found, within: SELF_TEST_SEEDS, allFound: ok, ms })}\n`);
    process.exit(ok ? 0 : 1);
  }
  const seeds = a.seed === undefined ? Array.from({ length: a.seeds }, (_, i) => a.from + i) : [a.seed];
  const failing: RunResult[] = [];
  let steps = 0;
  let crashes = 0;
  let created = 0;
  for (const seed of seeds) {
    const r = await runSeed(seed);
    steps += r.stats.steps;
    crashes += r.stats.crashes;
    created += r.stats.created;
    if (r.violations.length > 0) {
      failing.push(r);
      if (!a.json) report(r);
    } else if (a.seed !== undefined && !a.json) {
      process.stdout.write(`seed ${seed}: ok (${JSON.stringify(r.stats)})\n  last steps:\n`);
      for (const l of r.trace) process.stdout.write(`    ${l}\n`);
    }
  }
  const ms = Math.round(performance.now() - t0);
  const violations = failing.reduce((n, r) => n + r.violations.length, 0);
  const summary = {
    seeds: seeds.length,
    violations,
    failingSeeds: failing.map((r) => ({
      seed: r.seed,
      reproduce: repro(r.seed),
      violations: r.violations.slice(0, 5),
    })),
    created,
    agentCrashes: crashes,
    steps,
    ms,
  };
  if (a.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else
    process.stdout.write(
      `${seeds.length} seed(s), ${violations} violation(s), ${created} creates, ${crashes} agent crashes, ${ms} ms\n`,
    );
  process.exit(violations === 0 ? 0 : 1);
}

await main();
