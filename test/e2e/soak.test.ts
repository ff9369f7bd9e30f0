/**
 * The short soaks CI runs (issue 11, item 5): `npm run soak` with simulated VMs (150 random operations) and
 * with real QEMU guests (40), under random SIGKILLs of the agent, the workers and nats-server: every
 * operation answered, nothing left, and real work done (creates, starts and deletes that succeeded).
 * The seeds are fixed here so a CI failure repeats with the command the failure prints.
 *
 * Found by `npm run soak -- --ops 150 --seed 42` (simulated VMs; 7 min, so not run here): a hypervisor
 * worker SIGKILLed during a kill took its simulated VMs with it and reported no VM death, so the task stayed
 * running and its rootfs mount stayed. Fixed (its successor reports them: src/workers/hypervisor/sim.ts);
 * regression test in test/e2e/lifecycle-edges.test.ts.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { REPO } from '../helpers/node.ts';

interface SoakReport {
  clean: boolean;
  unanswered: string[];
  faults: number;
  counts: Record<string, { ok: number; errors: Record<string, number> }>;
}

async function soak(args: string[]): Promise<SoakReport> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', join(REPO, 'bench/soak.ts'), ...args, '--json'],
    { cwd: REPO, timeout: 110_000, maxBuffer: 16 << 20 },
  ).catch((e: { stdout?: string; stderr?: string }) => {
    throw new Error(`soak failed: ${e.stdout ?? ''}\n${(e.stderr ?? '').slice(-2000)}`);
  });
  const r = JSON.parse(stdout.trim().split('\n').at(-1)!) as SoakReport;
  console.log(`soak ${args.join(' ')}: ${JSON.stringify(r)}`);
  return r;
}

const expectSound = (r: SoakReport) => {
  expect(r.unanswered).toEqual([]);
  expect(r.clean).toBe(true);
  expect(r.faults).toBeGreaterThan(0);
  for (const verb of ['create', 'start', 'delete']) expect(r.counts[verb]?.ok, verb).toBeGreaterThan(0);
};

describe('soak', () => {
  it('60 operations, simulated VMs, agent, worker and nats-server kills: all answered, nothing left', async () => {
    expectSound(await soak(['--ops', '60', '--seed', '42']));
  });

  it('40 operations on real QEMU guests under the same faults: all answered, nothing left', async () => {
    expectSound(await soak(['--ops', '40', '--seed', '7', '--real']));
  });
});
