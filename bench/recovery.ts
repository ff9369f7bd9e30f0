/**
 * Recovery and replay (issue 13, item 4), with simulated VMs:
 *
 *   raw read   every record of the node's log through the one reader (a batched ordered consumer)
 *   replay     the replay engine over the same records, sandbox by sandbox (rate next to the raw read)
 *   recovery   the agent holding `sandboxes` running sandboxes is SIGKILLed and started again; time until it
 *              serves again: its workers answer and its Task API answers `list`, which it subscribes only
 *              after recovery and reconciliation (up.ts, `ready`); then every recovered task must be listed
 *              in the state it had (`recoveredRunning`).
 *
 * The agent runs from dist/ (built first if stale), as `corral up` runs it. The phases of that restart come from
 * the new agent itself (its /metrics, corral_recovery_phase_seconds).
 * Alone: `npx tsx bench/recovery.ts [--sandboxes N] [--json]`; in `npm run bench` as `recovery`.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { readRecords } from '../src/bus/eventlog-reader.ts';
import { replay } from '../src/replay/engine.ts';
import { REPO, testNode } from '../test/helpers/node.ts';

export interface RecoveryBench {
  sandboxes: number;
  records: number;
  rawReadPerSec: number;
  replayPerSec: number;
  recoveryMs: number;
  recoveredRunning: number;
  /** Tasks listed after the restart in the state they were listed in before it (must be all of them). */
  recoveredAsBefore: number;
  /** Phases of the restart, as the new agent measured them (ms); absent when it does not report them. */
  [phase: `${string}Ms`]: number;
}

/** The agent's phase gauges from its Prometheus text: `corral_recovery_phase_seconds{phase="read"} 0.12`. */
export function phasesFrom(metrics: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of metrics.matchAll(/^corral_recovery_phase_seconds\{phase="(\w+)"\} ([\d.e+-]+)$/gm))
    out[`${m[1]}Ms`] = Math.round(Number(m[2]) * 1000 * 10) / 10;
  return out;
}

export async function benchRecovery(sandboxes: number, say: (s: string) => void): Promise<RecoveryBench> {
  // The agent starts from the compiled dist/, as `corral up` and systemd start it (bin/corral.mjs): build it if stale.
  execFileSync(process.execPath, [join(REPO, 'infra/scripts/build.mjs'), '--if-stale'], { stdio: 'ignore' });
  const sim = await testNode({ simulate: true });
  try {
    const b = sim.bundle('sim', { args: ['sleep', '1'] });
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (let i = next++; i < sandboxes; i = next++) {
          await sim.call('create', { id: `sim-${i}`, bundle: b }, 60_000);
          await sim.call('start', { id: `sim-${i}` }, 60_000);
        }
      }),
    );
    const createS = ((performance.now() - t0) / 1000).toFixed(1);
    say(`  ${sandboxes} simulated sandboxes running (${createS} s to create and start)`);
    const before = (await sim.call<{ tasks: { id: string; state: string }[] }>('list', {})).tasks;
    const r0 = performance.now();
    const records = await readRecords(sim.nc, { node: sim.node });
    const readMs = performance.now() - r0;
    const bySandbox = new Map<string, typeof records>();
    for (const r of records) {
      const list = bySandbox.get(r.sandbox);
      if (list) list.push(r);
      else bySandbox.set(r.sandbox, [r]);
    }
    const p0 = performance.now();
    let replayed = 0;
    for (const recs of bySandbox.values()) {
      const r = await replay(recs);
      replayed += recs.length;
      for (const t of r.tasks) t.actor.stop();
    }
    const replayMs = performance.now() - p0;
    const k0 = performance.now();
    await sim.restartAgent();
    const recoveryMs = performance.now() - k0;
    const after = new Map(
      (await sim.call<{ tasks: { id: string; state: string }[] }>('list', {})).tasks.map((t) => [t.id, t.state]),
    );
    const same = before.filter((t) => after.get(t.id) === t.state).length;
    if (same !== before.length) say(`  recovery: ${before.length - same} of ${before.length} tasks not as they were`);
    const phases = phasesFrom(await fetch(sim.metricsUrl).then((r) => r.text()));
    return {
      sandboxes,
      records: records.length,
      rawReadPerSec: records.length / (readMs / 1000),
      replayPerSec: replayed / (replayMs / 1000),
      recoveryMs,
      recoveredRunning: [...after.values()].filter((s) => s === 'running').length,
      recoveredAsBefore: same,
      ...phases,
    };
  } finally {
    await sim.cleanup();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const json = args.includes('--json');
  const sandboxes = Number(args[args.indexOf('--sandboxes') + 1] ?? 0) || 1000;
  const recovery = await benchRecovery(sandboxes, (s) => json || process.stderr.write(s + '\n'));
  const report = { recovery, ratios: { replayOverRawRead: recovery.replayPerSec / recovery.rawReadPerSec } };
  process.stdout.write(JSON.stringify(report, null, json ? undefined : 2) + '\n');
}
