/**
 * `npm run bench`: Corral's latency next to the raw cost of the same side effects, measured in the
 * same run on the same machine (ratios, not absolute numbers, are what compare across machines).
 *
 *   raw mount        mount -t tmpfs + umount through mount(8)
 *   raw boot         QemuDriver.boot → guest agent READY → stop, no NATS, no agent
 *   create→running   Task API create + start through NATS, agent, workers
 *   full run         create + start + wait + delete of `true`
 *
 *   replay           the replay engine over a node's log, next to the raw JetStream read of the same records
 *   recovery         an agent holding --sandboxes N (default 1000) running sandboxes with simulated VMs is
 *                    SIGKILLed; time until the restarted agent serves again, having rebuilt them all
 *   memory           heap per idle sandbox actor (created, effects answered at once)
 *   workload         exec latency next to the same exec through the guest channel alone, and a process start;
 *                    stdin → cat → stdout MB/s through Corral next to the guest channel alone (bench/workload.ts)
 *   containerd       `ctr run --rm … true` through the corral runtime next to `corral run` of the same rootfs (the
 *                    shim's overhead) and next to runc (bench/containerd.ts)
 *   throughput       creates/s with simulated VMs (real mount worker, real JetStream) next to the same mounts and
 *                    appends done directly (bench/throughput.ts); host memory (PSS) of one running sandbox's QEMU
 *   fleet            placement latency with 100 simulated nodes; create throughput through the fleet
 *                    subject next to the same creates sent to the node directly (bench/fleet.ts)
 *   network          TCP MB/s guest ⇄ a host test namespace (tcfilter; guest → host also macvtap) next to the same
 *                    transfer between two namespaces without a VM; create → first output with the network on and
 *                    off (bench/network.ts)
 *   pool             create→running taking an idle VM from the pool (`[factory] vm_cache_number = 1`) next to a
 *                    cold create→running on the same node, in turns (bench/pool.ts)
 *   tracing          create→running with traces exported (agent, workers, this process as the client) to a local
 *                    OTLP receiver, next to the same on a node with tracing off (bench/tracing.ts)
 *
 * Flags: --runs N (default 7), --sandboxes N (default 1000), --json.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createActor } from 'xstate';
import { QemuDriver } from '../src/workers/hypervisor/qemu.ts';
import { provideEffects, sandboxMachine } from '../src/machines/index.ts';
import { REPO, testNode } from '../test/helpers/node.ts';
import { fakeEffects, request as fakeRequest } from '../test/helpers/fake-effects.ts';
import { benchContainerd } from './containerd.ts';
import { benchFleet } from './fleet.ts';
import { benchThroughput } from './throughput.ts';
import { benchTracing } from './tracing.ts';
import { benchWorkload } from './workload.ts';
import { benchNetwork } from './network.ts';
import { benchPool } from './pool.ts';
import { benchRecovery } from './recovery.ts';
import { pct, time } from './timing.ts';

const args = process.argv.slice(2);
const runs = Number(args[args.indexOf('--runs') + 1] ?? 0) || 7;
const json = args.includes('--json');
const sandboxes = Number(args[args.indexOf('--sandboxes') + 1] ?? 0) || 1000;
const say = (s: string) => {
  if (!json) process.stderr.write(s + '\n');
};

const stats = (xs: number[]) => ({ n: xs.length, p50: pct(xs, 50), p99: pct(xs, 99) });

const tmp = mkdtempSync('/tmp/corral-bench-');
let hostBytesPerRunningSandbox: number | undefined;

/** PSS (bytes) of one running sandbox's QEMU, real guest idle in `sleep` (smaps_rollup: shared pages split). */
async function runningSandboxPss(n: Awaited<ReturnType<typeof testNode>>): Promise<number> {
  const id = 'bench-pss';
  const { pid } = await n.call<{ pid: number }>('create', { id, bundle: n.bundle(id, { args: ['sleep', '600'] }) });
  await n.call('start', { id });
  const pss = Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0) * 1024;
  await n.call('kill', { id, signal: 9 });
  await n.call('wait', { id });
  await n.call('delete', { id });
  return pss;
}
const results: Record<string, ReturnType<typeof stats>> = {};
try {
  say(`corral bench: ${runs} runs each (TCG guests here: see docs/machine notes)`);

  // Raw mount: the mount worker's side effect without NATS or the worker.
  const mnt = join(tmp, 'mnt');
  mkdirSync(mnt);
  results.rawMount = stats(
    await time(runs * 3, () => {
      execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', mnt]);
      execFileSync('umount', [mnt]);
    }),
  );

  // Raw boot: QEMU to guest-agent READY and stop, straight through the driver.
  const guest = join(REPO, '.corral/guest');
  const driver = new QemuDriver();
  results.rawBoot = stats(
    await time(runs, async (i) => {
      const shared = join(tmp, `shared-${i}`);
      mkdirSync(shared);
      await driver.boot(
        {
          sandboxId: `bench-raw-${i}`,
          vcpus: 1,
          memoryMiB: 512,
          kernel: join(guest, 'vmlinux'),
          initrd: join(guest, 'initramfs.cpio.gz'),
          kernelParams: '',
          machineType: 'microvm',
          accel: 'auto',
          sharedDir: shared,
          msize9p: 8192,
          runDir: join(tmp, `vm-${i}`),
        },
        new AbortController().signal,
      );
      await driver.stop(`bench-raw-${i}`);
    }),
  );
  say(
    `  raw mount+umount p50 ${results.rawMount.p50.toFixed(1)} ms;` +
      ` raw boot→ready→stop p50 ${results.rawBoot.p50.toFixed(0)} ms`,
  );

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
    hostBytesPerRunningSandbox = await runningSandboxPss(n);
  } finally {
    await n.cleanup();
  }

  // Memory per idle sandbox actor.
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const { fx } = fakeEffects();
  const machine = provideEffects(sandboxMachine, fx);
  const N = 5000;
  gc();
  const before = process.memoryUsage().heapUsed;
  const actors = Array.from({ length: N }, (_, i) =>
    createActor(machine, { input: { id: `m${i}`, request: fakeRequest(`m${i}`), rid: 'r' } }).start(),
  );
  await new Promise((r) => setTimeout(r, 200));
  gc();
  const perActor = (process.memoryUsage().heapUsed - before) / N;
  const idle = actors.filter((a) => a.getSnapshot().value === 'created').length;
  for (const a of actors) a.stop();
  say(`  memory: ${(perActor / 1024).toFixed(1)} KiB per idle sandbox actor (${idle}/${N} settled in created)`);

  // Recovery of an agent holding many sandboxes (simulated VMs), and replay next to raw reads (bench/recovery.ts).
  const recovery = await benchRecovery(sandboxes, say);

  const wl = await benchWorkload(tmp, runs, time);
  results.rawStart = stats(wl.rawStart);
  results.rawExec = stats(wl.rawExec);
  results.corralExec = stats(wl.corralExec);
  const io = { rawMBs: wl.rawMBs, corralMBs: wl.corralMBs };
  say(`  workload: exec p50 ${results.corralExec.p50.toFixed(1)} ms, stdin→stdout ${io.corralMBs.toFixed(1)} MB/s`);

  const nb = await benchNetwork(runs);
  results.firstOutputNetOn = stats(nb.firstOutputOn);
  results.firstOutputNetOff = stats(nb.firstOutputOff);
  const network = {
    guestToHostMBs: nb.guestToHostMBs,
    macvtapGuestToHostMBs: nb.macvtapGuestToHostMBs,
    plainToHostMBs: nb.plainToHostMBs,
    hostToGuestMBs: nb.hostToGuestMBs,
    hostToPlainMBs: nb.hostToPlainMBs,
  };
  say(`  network: guest→host ${nb.guestToHostMBs.toFixed(1)} MB/s, host→guest ${nb.hostToGuestMBs.toFixed(1)} MB/s`);

  const ct = await benchContainerd(runs, time);
  results.ctrCorral = stats(ct.ctrCorral);
  results.corralRun = stats(ct.corralRun);
  results.ctrRunc = stats(ct.runc);
  say(`  containerd: ctr run (corral) p50 ${results.ctrCorral.p50.toFixed(0)} ms`);

  const throughput = await benchThroughput(tmp);
  say(`  throughput: ${throughput.createsPerSec.toFixed(1)} creates/s (${throughput.overRaw.toFixed(2)}× raw)`);

  const fb = await benchFleet({ say });
  results.placementAlone = stats(fb.placementAlone);
  results.placementInFlight = stats(fb.placementInFlight);
  const fleet = { nodes: fb.nodes, creates: fb.creates, directPerSec: fb.directPerSec, fleetPerSec: fb.fleetPerSec };

  const pb = await benchPool(runs, time);
  results.warmCreateToRunning = stats(pb.warm);
  results.coldCreateToRunning = stats(pb.cold);
  const [warmP50, coldP50] = [results.warmCreateToRunning.p50, results.coldCreateToRunning.p50];
  say(`  pool: create→running p50 ${warmP50.toFixed(0)} ms warm, ${coldP50.toFixed(0)} ms cold`);

  const tr = await benchTracing(runs, time);
  results.createToRunningTracingOff = stats(tr.off);
  results.createToRunningTracingOn = stats(tr.on);
  results.simCreateToRunningTracingOff = stats(tr.simOff);
  results.simCreateToRunningTracingOn = stats(tr.simOn);
  say(`  tracing: create→running p50 ${results.createToRunningTracingOn.p50.toFixed(0)} ms on, ${tr.spans} spans`);

  const ratio = (a: string, b: string) => results[a]!.p50 / results[b]!.p50;
  const report = {
    runs,
    results,
    memory: { bytesPerIdleSandboxActor: Math.round(perActor), hostBytesPerRunningSandbox },
    throughput,
    recovery,
    fleet,
    io,
    network,
    ratios: {
      execOverRawExec: ratio('corralExec', 'rawExec'),
      ioOverRawIo: io.corralMBs / io.rawMBs,
      netGuestToHostOverPlain: network.guestToHostMBs / network.plainToHostMBs,
      netHostToGuestOverPlain: network.hostToGuestMBs / network.hostToPlainMBs,
      firstOutputNetOnOverOff: ratio('firstOutputNetOn', 'firstOutputNetOff'),
      createToRunningOverRawBoot: ratio('createToRunning', 'rawBoot'),
      fullRunOverRawBoot: ratio('fullRun', 'rawBoot'),
      replayOverRawRead: recovery.replayPerSec / recovery.rawReadPerSec,
      fleetOverDirectCreates: fleet.fleetPerSec / fleet.directPerSec,
      ctrCorralOverCorralRun: ratio('ctrCorral', 'corralRun'),
      ctrCorralOverRunc: ratio('ctrCorral', 'ctrRunc'),
      warmStartOverColdBoot: ratio('warmCreateToRunning', 'coldCreateToRunning'),
      tracingOnOverOff: ratio('createToRunningTracingOn', 'createToRunningTracingOff'),
      tracingOnOverOffSimulated: ratio('simCreateToRunningTracingOn', 'simCreateToRunningTracingOff'),
    },
    tracing: { spans: tr.spans },
  };
  if (json) {
    process.stdout.write(JSON.stringify(report) + '\n');
  } else {
    const row = (k: string, label: string) => {
      const r = results[k]!;
      const ms = (v: number) => v.toFixed(1).padStart(8);
      return `${label.padEnd(28)} p50 ${ms(r.p50)} ms   p99 ${ms(r.p99)} ms   (n=${r.n})`;
    };
    console.log(row('rawMount', 'raw mount+umount'));
    console.log(row('rawBoot', 'raw QEMU boot→ready→stop'));
    console.log(row('createToRunning', 'corral create→running'));
    console.log(row('fullRun', 'corral full run (true)'));
    console.log(`ratio create→running / raw boot: ${report.ratios.createToRunningOverRawBoot.toFixed(2)}`);
    console.log(`ratio full run / raw boot:       ${report.ratios.fullRunOverRawBoot.toFixed(2)}`);
    console.log(`memory per idle sandbox actor:   ${(report.memory.bytesPerIdleSandboxActor / 1024).toFixed(1)} KiB`);
    console.log(
      `recovery: agent holding ${recovery.sandboxes} running sandboxes (simulated VMs) SIGKILLed →` +
        ` serving again in ${recovery.recoveryMs.toFixed(0)} ms, ${recovery.recoveredRunning} running after`,
    );
    console.log(
      `replay: ${recovery.replayPerSec.toFixed(0)} events/s vs raw JetStream read` +
        ` ${recovery.rawReadPerSec.toFixed(0)} events/s of the same ${recovery.records} records` +
        ` (ratio ${report.ratios.replayOverRawRead.toFixed(2)})`,
    );
    console.log(
      `throughput: ${throughput.createsPerSec.toFixed(1)} creates/s (simulated VMs, ${throughput.concurrency} ` +
        `in flight) vs ${throughput.rawPerSec.toFixed(1)}/s of the same mounts and appends done directly ` +
        `(ratio ${throughput.overRaw.toFixed(2)})`,
    );
    console.log(`host memory per running sandbox: ${((hostBytesPerRunningSandbox ?? 0) / 1048576).toFixed(0)} MiB PSS`);
    console.log(row('ctrCorral', 'ctr run --rm true (corral)'));
    console.log(row('corralRun', 'corral run --rm true'));
    console.log(row('ctrRunc', 'ctr run --rm true (runc)'));
    console.log(
      `ratio ctr (corral) / corral run: ${report.ratios.ctrCorralOverCorralRun.toFixed(2)} (the shim's overhead)`,
    );
    console.log(`ratio ctr (corral) / ctr (runc): ${report.ratios.ctrCorralOverRunc.toFixed(2)} (a VM per container)`);
    console.log(row('rawStart', 'raw process start→exit'));
    console.log(row('rawExec', 'raw exec (guest channel)'));
    console.log(row('corralExec', 'corral exec+start+wait+del'));
    console.log(`ratio exec / raw exec:           ${report.ratios.execOverRawExec.toFixed(2)}`);
    console.log(
      `stdin→cat→stdout 16 MiB: ${io.corralMBs.toFixed(1)} MB/s through Corral vs ${io.rawMBs.toFixed(1)} MB/s ` +
        `through the guest channel alone (ratio ${report.ratios.ioOverRawIo.toFixed(2)})`,
    );
    console.log(
      `network, 64 MiB over TCP: guest→host ns ${network.guestToHostMBs.toFixed(1)} MB/s (macvtap ` +
        `${network.macvtapGuestToHostMBs.toFixed(1)}) vs ${network.plainToHostMBs.toFixed(1)} MB/s between two ` +
        `namespaces; host ns→guest ${network.hostToGuestMBs.toFixed(1)} vs ${network.hostToPlainMBs.toFixed(1)} MB/s`,
    );
    console.log(row('firstOutputNetOn', 'create→first output, net on'));
    console.log(row('firstOutputNetOff', 'create→first output, net off'));
    console.log(`ratio first output on / off:     ${report.ratios.firstOutputNetOnOverOff.toFixed(2)}`);
    console.log(row('placementAlone', `fleet placement, ${fleet.nodes} sim nodes`));
    console.log(row('placementInFlight', '  … 32 in flight'));
    console.log(
      `fleet creates: ${fleet.fleetPerSec.toFixed(1)}/s through corral.v1.fleet.task.create` +
        ` vs ${fleet.directPerSec.toFixed(1)}/s sent to the node directly` +
        ` (${fleet.creates} each, 8 in flight, simulated VMs;` +
        ` ratio ${report.ratios.fleetOverDirectCreates.toFixed(2)})`,
    );
    console.log(row('warmCreateToRunning', 'create→running, from the pool'));
    console.log(row('coldCreateToRunning', 'create→running, cold boot'));
    console.log(`ratio warm start / cold boot:    ${report.ratios.warmStartOverColdBoot.toFixed(3)}`);
    console.log(row('createToRunningTracingOff', 'create→running, tracing off'));
    console.log(row('createToRunningTracingOn', 'create→running, tracing on'));
    console.log(row('simCreateToRunningTracingOff', '  … simulated VMs, off'));
    console.log(row('simCreateToRunningTracingOn', '  … simulated VMs, on'));
    console.log(
      `ratio tracing on / off:          ${report.ratios.tracingOnOverOff.toFixed(2)} ` +
        `(simulated VMs: ${report.ratios.tracingOnOverOffSimulated.toFixed(2)}; ${tr.spans} spans exported)`,
    );
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
