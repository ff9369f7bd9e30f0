/**
 * Workload benchmarks (issue 8), each next to its baseline measured in the same run:
 *
 *   exec latency      Task API exec + start + wait + delete of `true` in a running task, through NATS, the
 *                     agent and the hypervisor worker; baseline: the same exec straight through the guest
 *                     channel (QemuDriver.exec → its exit event), no NATS, no agent
 *   process start     QemuDriver.startProcess of `true` to its exit, for scale
 *   stdin → stdout    MB/s of 16 MiB through `cat`: Corral's stdin data plane (bus/stdin-client.ts) in, the io
 *                     subject out; baseline: the same bytes through the guest channel alone (writeStdin, the
 *                     driver's output events)
 */
import { cpSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pumpStdin } from '../src/bus/stdin-client.ts';
import { subjects } from '../src/bus/subjects.ts';
import type { ExitEvent } from '../src/workers/hypervisor/hypervisor.ts';
import { QemuDriver } from '../src/workers/hypervisor/qemu.ts';
import { REPO, testNode } from '../test/helpers/node.ts';

const BYTES = 16 << 20;
const proc = { env: ['PATH=/bin'], cwd: '/', uid: 0, gid: 0, additionalGids: [], terminal: false };

async function* chunks(data: Uint8Array, size = 64 << 10) {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
}

export async function benchWorkload(
  tmp: string,
  runs: number,
  time: (n: number, f: () => Promise<void>) => Promise<number[]>,
) {
  const data = randomBytes(BYTES);
  const guest = join(REPO, '.corral/guest');
  const driver = new QemuDriver();
  const shared = join(tmp, 'wl-shared');
  const sid = 'bench-wl';
  for (const c of ['sb', 'cat']) {
    mkdirSync(join(shared, c), { recursive: true });
    cpSync(join(REPO, 'examples/hello/rootfs'), join(shared, c, 'rootfs'), { recursive: true, verbatimSymlinks: true });
  }
  const exits = new Map<string, (e: ExitEvent) => void>();
  driver.on('exit', (e) => exits.get(`${e.containerId}/${e.execId ?? ''}`)?.(e));
  const exited = (cid: string, eid = '') => new Promise<ExitEvent>((r) => exits.set(`${cid}/${eid}`, r));
  await driver.boot(
    {
      sandboxId: sid,
      vcpus: 1,
      memoryMiB: 512,
      kernel: join(guest, 'vmlinux'),
      initrd: join(guest, 'initramfs.cpio.gz'),
      kernelParams: '',
      machineType: 'microvm',
      accel: 'auto',
      sharedDir: shared,
      msize9p: 512000,
      runDir: join(tmp, 'wl-vm'),
    },
    new AbortController().signal,
  );
  try {
    let k = 0;
    const rawStart = await time(runs * 3, async () => {
      const done = exited('sb');
      await driver.startProcess({ sandboxId: sid, containerId: 'sb', args: ['true'], ...proc });
      await done;
    });
    await driver.startProcess({ sandboxId: sid, containerId: 'sb', args: ['sleep', '600'], ...proc });
    const rawExec = await time(runs * 3, async () => {
      const execId = `x${k++}`;
      const done = exited('sb', execId);
      await driver.exec({ sandboxId: sid, containerId: 'sb', execId, args: ['true'], ...proc });
      await done;
    });
    // The guest channel alone: `cat` fed with writeStdin, its output counted off the driver's events.
    let got = 0;
    driver.on('output', (_s, cid, _fd, d) => {
      if (cid === 'cat') got += d.length;
    });
    const catDone = exited('cat');
    const t0 = performance.now();
    await driver.startProcess({ sandboxId: sid, containerId: 'cat', args: ['cat'], ...proc, stdin: true });
    for await (const c of chunks(data)) await driver.writeStdin({ sandboxId: sid, containerId: 'cat' }, c);
    await driver.closeStdin({ sandboxId: sid, containerId: 'cat' });
    await catDone;
    const rawMBs = got / 1048576 / ((performance.now() - t0) / 1000);
    if (got !== BYTES) throw new Error(`raw cat returned ${got} of ${BYTES} bytes`);
    await driver.stop(sid);

    const n = await testNode();
    try {
      const id = 'bench-exec';
      await n.call('create', { id, bundle: n.bundle(id, { args: ['sleep', '600'] }) });
      await n.call('start', { id });
      const corralExec = await time(runs * 3, async () => {
        const execId = `x${k++}`;
        await n.call('exec', { id, execId, spec: { args: ['true'], env: ['PATH=/bin'] } });
        await n.call('start', { id, execId });
        await n.call('wait', { id, execId });
        await n.call('delete', { id, execId });
      });
      await n.call('kill', { id, signal: 9 });
      await n.call('wait', { id });
      await n.call('delete', { id });

      const cat = 'bench-cat';
      await n.call('create', { id: cat, bundle: n.bundle(cat, { args: ['cat'] }), stdin: 'nats:stdin' });
      let out = 0;
      const sub = n.nc.subscribe(subjects.io(n.node, cat, 'stdout'), {
        callback: (_e, m) => {
          out += m.data.length;
        },
      });
      const t1 = performance.now();
      await n.call('start', { id: cat });
      await pumpStdin(n.nc, { node: n.node, taskId: cat }, chunks(data));
      await n.call('wait', { id: cat });
      await n.nc.flush();
      const corralMBs = out / 1048576 / ((performance.now() - t1) / 1000);
      sub.unsubscribe();
      await n.call('delete', { id: cat });
      if (out !== BYTES) throw new Error(`corral cat returned ${out} of ${BYTES} bytes`);
      return { rawStart, rawExec, corralExec, rawMBs, corralMBs };
    } finally {
      await n.cleanup();
    }
  } finally {
    await driver.stopAll();
  }
}
