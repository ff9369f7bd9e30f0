/**
 * Warm starts from the VM pool (docs/decisions/0016-vm-pool.md): create→running (Task API create + start
 * of `true`) of a sandbox whose runtime config has `[factory] vm_cache_number = 1`, so that its create
 * takes the pool's idle VM, next to the same create→running with the node's plain config (a cold boot),
 * on the same node, in turns (cold, warm, cold, warm, ...). Before each measured create the pool has its
 * idle VM and no boot in flight, so neither side shares the CPU with a refill.
 *
 * Standalone: `npx tsx bench/pool.ts [--runs N]` prints the figures as JSON.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from '../src/bus/rpc.ts';
import { subjects } from '../src/bus/subjects.ts';
import { localRuntimeConfig } from '../src/cli/commands/up.ts';
import type { PoolOps } from '../src/domain/pool.ts';
import { REPO, testNode } from '../test/helpers/node.ts';
import { waitFor } from '../test/helpers/wait.ts';
import { pct, time, type Time } from './timing.ts';

type Pool = PoolOps['pool']['res'];

export async function benchPool(runs: number, time: Time): Promise<{ warm: number[]; cold: number[] }> {
  const n = await testNode();
  try {
    const cfg = join(n.configs, 'pooled.toml');
    writeFileSync(cfg, localRuntimeConfig(join(REPO, '.corral/guest')) + '\n[factory]\nvm_cache_number = 1\n');
    const settled = () =>
      waitFor(() => request<Pool>(n.nc, subjects.worker(n.node, 'hypervisor', 'pool'), {}, 5000), {
        until: (p) => p.classes.length > 0 && p.vms.length === 1 && p.vms[0]!.state === 'idle',
        timeoutMs: 120_000,
        intervalMs: 100,
        what: 'the pool to hold one idle VM and boot none',
      });
    const b = n.bundle('pool-bench', { args: ['true'] });
    const once = async (id: string, options: Record<string, unknown>) => {
      await n.call('create', { id, bundle: b, options });
      await n.call('start', { id });
    };
    const done = async (id: string) => {
      await n.call('wait', { id });
      await n.call('delete', { id });
    };
    // The first pooled create misses (the class is learnt from it) and starts the pool.
    await once('pool-prime', { configPath: cfg });
    await done('pool-prime');
    const warm: number[] = [];
    const cold: number[] = [];
    for (let i = 0; i < runs; i++) {
      await settled();
      cold.push(...(await time(1, () => once(`pool-cold-${i}`, {}))));
      await done(`pool-cold-${i}`);
      await settled();
      warm.push(...(await time(1, () => once(`pool-warm-${i}`, { configPath: cfg }))));
      await done(`pool-warm-${i}`);
    }
    const p = await request<Pool>(n.nc, subjects.worker(n.node, 'hypervisor', 'pool'), {}, 5000);
    const hits = p.classes[0]?.hits ?? 0;
    if (hits !== runs) throw new Error(`bench/pool: ${hits} of ${runs} warm creates took a pool VM`);
    return { warm, cold };
  } finally {
    await n.cleanup();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const runs = Number(args[args.indexOf('--runs') + 1] ?? 0) || 5;
  const { warm, cold } = await benchPool(runs, time);
  const p50 = (xs: number[]) => pct(xs, 50);
  const r = { warm, cold, warmP50: p50(warm), coldP50: p50(cold), warmStartOverColdBoot: p50(warm) / p50(cold) };
  process.stdout.write(JSON.stringify(r) + '\n');
}
