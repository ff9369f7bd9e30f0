/**
 * Creates per second on one node (issue 13), simulated VMs but the real mount worker and real JetStream,
 * next to the same work done directly in the same run:
 *
 *   corral   N creates through the Task API, CONCURRENCY in flight: each is the agent's plan, the mount
 *            worker's mkdir + bind mount, the simulated boot, and the log appends it journals
 *   raw      per create, the same done the fastest honest way: the same directories (the sandbox's, and its
 *            shared/<id>/rootfs the bind lands on: Kata's layout, four made per create), a bind mount, and as
 *            many acknowledged appends to a JetStream stream as a Corral create journals (messages, counted
 *            from the log: records that shared one count once), each as large as Corral's on average, all
 *            in flight at once (Corral must order a sandbox's appends; raw need not), the same concurrency
 *
 * Raw's appends go out the way the event log's do (src/bus/reply-mux.ts jsPublish: cheaper than nats.js's
 * js.publish), so only the ordering and the bookkeeping around them count against Corral.
 *
 * The raw bind is made the way the mount worker makes it: mount(2) in-process through the same koffi binding
 * (src/workers/mount/mount-sys.ts) when the worker uses it, mount(8) forked when it falls back (`mounts` in the
 * result says which). A raw side that forked mount(8) while Corral calls mount(2) would flatter the ratio.
 *
 * overRaw = time per create through Corral / time per create raw (1 = no overhead beyond the side effects).
 * cpuOverRaw = the same for the CPU all the processes spent (bench/cpu.ts), which a shared machine disturbs less;
 * cpuMsPerCreateBy splits Corral's by process (agent, each worker, nats-server, this client).
 * Then the tasks are deleted (their mounts undone), and the raw mounts unmounted.
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { encode } from '../src/bus/codec.ts';
import { readRecords } from '../src/bus/eventlog-reader.ts';
import { jsPublish } from '../src/bus/reply-mux.ts';
import { loadMountSys, MNT, MS } from '../src/workers/mount/mount-sys.ts';
import { testNode } from '../test/helpers/node.ts';
import { cpuByRole, cpuSince, treeCpu } from './cpu.ts';

const CONCURRENCY = 16;
const run = promisify(execFile);

async function pool(n: number, f: (i: number) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let i = next++; i < n; i = next++) await f(i);
    }),
  );
}

export async function benchThroughput(tmp: string, n = 200) {
  const sim = await testNode({ simulate: true });
  try {
    const b = sim.bundle('tput', { args: ['sleep', '1'] });
    const c0 = treeCpu();
    const t0 = performance.now();
    await pool(n, (i) => sim.call('create', { id: `tp-${i}`, bundle: b }, 60_000).then(() => undefined));
    const corralMs = performance.now() - t0;
    const c1 = treeCpu();
    const corralCpuMs = cpuSince(c0, c1);
    const byRole = cpuByRole(c0, c1);
    const records = (await readRecords(sim.nc, { node: sim.node })).filter((r) => r.taskId?.startsWith('tp-'));
    // Records that shared a message (src/bus/eventlog.ts Share) share its sequence: raw sends as many messages,
    // as large on average as Corral's (the records' own encoding, without the sequence and subject read back).
    const perCreate = Math.round(new Set(records.map((r) => r.seq)).size / n);
    const recordBytes = records.reduce((sum, { seq: _s, subject: _u, ...r }) => sum + encode(r).length, 0);

    const jsm = await jetstreamManager(sim.nc);
    await jsm.streams.add({ name: 'BENCH_RAW', subjects: ['bench.raw.>'] });
    const body = new Uint8Array(Math.round(recordBytes / (perCreate * n)));
    const src = join(tmp, 'tput-src');
    mkdirSync(src, { recursive: true });
    const loaded = loadMountSys();
    const sys = 'sys' in loaded ? loaded.sys : undefined;
    const rc0 = treeCpu();
    const r0 = performance.now();
    await pool(n, async (i) => {
      const target = join(tmp, 'tput', String(i), 'shared', String(i), 'rootfs');
      mkdirSync(target, { recursive: true }); // the sandbox's directory, and shared/<id>/rootfs in it
      if (sys) await sys.mount(src, target, null, MS.BIND, null);
      else await run('mount', ['--bind', src, target]);
      await Promise.all(
        Array.from({ length: perCreate }, () => jsPublish(sim.nc, `bench.raw.${i}`, body, { timeoutMs: 30_000 })),
      );
    });
    const rawMs = performance.now() - r0;
    const rawCpuMs = cpuSince(rc0);
    for (let i = 0; i < n; i++) {
      const target = join(tmp, 'tput', String(i), 'shared', String(i), 'rootfs');
      if (sys) await sys.umount2(target, MNT.NOFOLLOW);
      else execFileSync('umount', [target]);
    }
    rmSync(join(tmp, 'tput'), { recursive: true, force: true });
    await jsm.streams.delete('BENCH_RAW');
    await pool(n, (i) => sim.call('delete', { id: `tp-${i}` }, 60_000).then(() => undefined));
    return {
      creates: n,
      concurrency: CONCURRENCY,
      mounts: sys ? 'mount(2)' : 'mount(8)',
      appendsPerCreate: perCreate,
      recordsPerCreate: Math.round(records.length / n),
      bytesPerAppend: body.length,
      createsPerSec: n / (corralMs / 1000),
      rawPerSec: n / (rawMs / 1000),
      overRaw: corralMs / rawMs,
      // CPU of every process of the node (agent, workers, nats-server, this client) per create, and raw's
      // (nats-server, this client): steadier than the times on a shared machine.
      cpuMsPerCreate: corralCpuMs / n,
      rawCpuMsPerCreate: rawCpuMs / n,
      cpuOverRaw: corralCpuMs / rawCpuMs,
      // The same per process (agent, worker.mount, worker.hypervisor, natsServer, client...): where it goes.
      cpuMsPerCreateBy: Object.fromEntries(
        Object.entries(byRole)
          .filter(([, ms]) => ms > 0)
          .map(([role, ms]) => [role, Math.round((ms / n) * 100) / 100]),
      ),
    };
  } finally {
    await sim.cleanup();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const n = Number(args[args.indexOf('--creates') + 1] ?? 0) || 200;
  const tmp = mkdtempSync('/tmp/corral-tput-');
  try {
    process.stdout.write(JSON.stringify(await benchThroughput(tmp, n)) + '\n');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
