/**
 * `npm run bench`: Corral's latency next to the raw cost of the same side effects, measured in the
 * same run on the same machine (ratios, not absolute numbers, are what compare across machines).
 *
 *   raw mount        mount -t tmpfs + umount through mount(8)
 *   raw boot         QemuDriver.boot → guest agent READY → stop, no NATS, no agent
 *   create→running   Task API create + start through NATS, agent, workers
 *   full run         create + start + wait + delete of `true`
 *
 * Flags: --runs N (default 7), --json.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { QemuDriver } from '../src/workers/hypervisor/qemu.ts';
import { REPO, testNode } from '../test/helpers/node.ts';

const args = process.argv.slice(2);
const runs = Number(args[args.indexOf('--runs') + 1] ?? 0) || 7;
const json = args.includes('--json');
const say = (s: string) => { if (!json) process.stderr.write(s + '\n'); };

const pct = (xs: number[], p: number) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!; };
const stats = (xs: number[]) => ({ n: xs.length, p50: pct(xs, 50), p99: pct(xs, 99) });
async function time(n: number, f: (i: number) => Promise<void> | void): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) { const t = performance.now(); await f(i); out.push(performance.now() - t); }
  return out;
}

const tmp = mkdtempSync('/tmp/corral-bench-');
const results: Record<string, ReturnType<typeof stats>> = {};
try {
  say(`corral bench: ${runs} runs each (TCG guests here: see docs/machine notes)`);

  // Raw mount: the mount worker's side effect without NATS or the worker.
  const mnt = join(tmp, 'mnt');
  mkdirSync(mnt);
  results.rawMount = stats(await time(runs * 3, () => { execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', mnt]); execFileSync('umount', [mnt]); }));

  // Raw boot: QEMU to guest-agent READY and stop, straight through the driver.
  const guest = join(REPO, '.corral/guest');
  const driver = new QemuDriver();
  results.rawBoot = stats(await time(runs, async (i) => {
    const shared = join(tmp, `shared-${i}`);
    mkdirSync(shared);
    await driver.boot({
      sandboxId: `bench-raw-${i}`, vcpus: 1, memoryMiB: 512, kernel: join(guest, 'vmlinux'), initrd: join(guest, 'initramfs.cpio.gz'),
      kernelParams: '', machineType: 'microvm', accel: 'auto', sharedDir: shared, msize9p: 8192, runDir: join(tmp, `vm-${i}`),
    }, new AbortController().signal);
    await driver.stop(`bench-raw-${i}`);
  }));
  say(`  raw mount+umount p50 ${results.rawMount.p50.toFixed(1)} ms; raw boot→ready→stop p50 ${results.rawBoot.p50.toFixed(0)} ms`);

  const n = await testNode();
  try {
    const b = n.bundle('bench', { args: ['true'] });
    const createToRunning: number[] = [];
    const fullRun: number[] = [];
    for (let i = 0; i < runs; i++) {
      const id = `bench-${i}`;
      const t0 = performance.now();
      await n.call('create', { id, bundle: b });
      await n.call('start', { id });
      createToRunning.push(performance.now() - t0);
      await n.call('wait', { id });
      await n.call('delete', { id });
      fullRun.push(performance.now() - t0);
    }
    results.createToRunning = stats(createToRunning);
    results.fullRun = stats(fullRun);
  } finally { await n.cleanup(); }

  const ratio = (a: string, b: string) => results[a]!.p50 / results[b]!.p50;
  const report = {
    runs, results,
    ratios: { createToRunningOverRawBoot: ratio('createToRunning', 'rawBoot'), fullRunOverRawBoot: ratio('fullRun', 'rawBoot') },
  };
  if (json) { process.stdout.write(JSON.stringify(report) + '\n'); } else {
    const row = (k: string, label: string) => `${label.padEnd(28)} p50 ${results[k]!.p50.toFixed(1).padStart(8)} ms   p99 ${results[k]!.p99.toFixed(1).padStart(8)} ms   (n=${results[k]!.n})`;
    console.log(row('rawMount', 'raw mount+umount'));
    console.log(row('rawBoot', 'raw QEMU boot→ready→stop'));
    console.log(row('createToRunning', 'corral create→running'));
    console.log(row('fullRun', 'corral full run (true)'));
    console.log(`ratio create→running / raw boot: ${report.ratios.createToRunningOverRawBoot.toFixed(2)}`);
    console.log(`ratio full run / raw boot:       ${report.ratios.fullRunOverRawBoot.toFixed(2)}`);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
