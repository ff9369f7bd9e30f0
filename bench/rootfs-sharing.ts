/**
 * Rootfs over virtio-9p, virtio-fs and an ext4 image on virtio-blk (docs/decisions/0001-rootfs-sharing.md,
 * 0010-virtio-fs.md).
 *
 * For each rootfs (busybox only; busybox + a copy of /usr/lib/python3.11; busybox + one 128 MiB file) and
 * each mode, N times:
 *   ready:  QemuDriver.boot start → guest agent READY (virtio-fs: virtiofsd's start included)
 *   output: boot start → first output byte of `echo hi` (shares: the whole path; blk: after the image is built)
 *   image:  `mkfs.ext4 -d` time (blk only; paid again whenever the rootfs changes)
 *   total:  image + output, what a create pays
 *   read:   `cat` of every file under /data in the running container (cold guest cache), start → exit: many
 *           files for the first two rootfs, one large sequential read for the third
 * Run: npx tsx bench/rootfs-sharing.ts [runs=5]   (root, QEMU, a virtiofsd, infra/guest/build.sh done)
 * Env: VFS_CACHE (virtio_fs_cache of the virtio-fs mode, default auto).
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import type { BootSpec } from '../src/domain/ops.ts';
import { QemuDriver } from '../src/workers/hypervisor/qemu.ts';

const runs = Number(process.argv[2] ?? 5);
const GUEST = process.env.CORRAL_GUEST_DIR ?? fileURLToPath(new URL('../.corral/guest', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'corral-bench-'));
const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)] ?? NaN;

const MODES = ['9p', 'virtio-fs', 'blk'] as const;
type Mode = (typeof MODES)[number];

/** `data`: a directory copied to /data/lib, or a size in MiB: one file /data/big of that many random bytes. */
function makeRootfs(dir: string, data?: string | number): number {
  mkdirSync(join(dir, 'bin'), { recursive: true });
  copyFileSync('/bin/busybox', join(dir, 'bin/busybox'));
  for (const a of ['sh', 'echo', 'cat', 'find', 'xargs', 'wc']) symlinkSync('busybox', join(dir, 'bin', a));
  mkdirSync(join(dir, 'data'));
  if (typeof data === 'string') cpSync(data, join(dir, 'data', 'lib'), { recursive: true });
  if (typeof data === 'number') writeFileSync(join(dir, 'data', 'big'), randomBytes(data << 20));
  return Number(execFileSync('du', ['-sm', dir], { encoding: 'utf8' }).split('\t')[0]);
}

async function once(d: QemuDriver, mode: Mode, src: string, n: number) {
  const sandboxId = `bench-${mode}-${n}`;
  const shared = join(tmp, sandboxId);
  mkdirSync(shared);
  const spec: BootSpec = {
    sandboxId,
    vcpus: 1,
    memoryMiB: 512,
    kernel: join(GUEST, 'vmlinux'),
    initrd: join(GUEST, 'initramfs.cpio.gz'),
    kernelParams: '',
    machineType: 'microvm',
    accel: 'auto',
    sharedDir: shared,
    msize9p: 512000,
    runDir: join(tmp, 'run'),
  };
  let extraArgs: string[] = [];
  let image = 0;
  if (mode !== 'blk') {
    cpSync(src, join(shared, 'c', 'rootfs'), { recursive: true, verbatimSymlinks: true });
    const cache = process.env.VFS_CACHE ?? 'auto';
    if (mode === 'virtio-fs') spec.virtioFs = { daemon: '', cache, extraArgs: [], queueSize: 0 };
  } else {
    const img = join(tmp, `${sandboxId}.ext4`);
    const mb = Math.ceil(Number(execFileSync('du', ['-sm', src], { encoding: 'utf8' }).split('\t')[0]) * 1.3) + 16;
    const t = performance.now();
    execFileSync('mkfs.ext4', ['-q', '-F', '-d', src, img, `${mb}M`]);
    image = performance.now() - t;
    extraArgs = ['-drive', `file=${img},if=none,id=rootfs,format=raw`, '-device', 'virtio-blk-device,drive=rootfs'];
    spec.kernelParams = 'corral.modules=virtio_blk,crc32c_generic,ext4 corral.blk=c';
  }
  const t0 = performance.now();
  const boot = await d.boot(spec, AbortSignal.timeout(60_000), { extraArgs });
  const ready = performance.now() - t0;
  const first = new Promise<number>((res) => d.once('output', () => res(performance.now() - t0)));
  const exited = (cid: string) =>
    new Promise<void>((res) => {
      const on = (e: { containerId: string }) => {
        if (e.containerId === cid) {
          d.off('exit', on);
          res();
        }
      };
      d.on('exit', on);
    });
  const proc = (cid: string, args: string[]) => ({
    sandboxId,
    containerId: cid,
    args,
    env: ['PATH=/bin'],
    cwd: '/',
    uid: 0,
    gid: 0,
    additionalGids: [],
    terminal: false,
  });
  let done = exited('c');
  await d.startProcess(proc('c', ['echo', 'hi']));
  const output = await first;
  await done;
  done = exited('c');
  const t1 = performance.now();
  await d.startProcess(proc('c', ['sh', '-c', 'find /data -type f | xargs cat | wc -c']));
  await done;
  const read = performance.now() - t1;
  await d.stop(sandboxId);
  rmSync(shared, { recursive: true, force: true });
  if (boot.accel !== 'tcg') console.log(`(accel ${boot.accel})`);
  return { ready, output, image, total: image + output, read };
}

type Row = Awaited<ReturnType<typeof once>>;
const d = new QemuDriver();
try {
  for (const [name, data] of [
    ['busybox', undefined],
    ['busybox+python3.11', '/usr/lib/python3.11'],
    ['busybox+128MiB file', 128],
  ] as const) {
    const src = join(tmp, `src-${name.replace(/\W/g, '_')}`);
    const mb = makeRootfs(src, data);
    const rows: Record<Mode, Row[]> = { '9p': [], 'virtio-fs': [], blk: [] };
    // Interleaved: load drifts.
    for (let i = 0; i < runs; i++) for (const mode of MODES) rows[mode].push(await once(d, mode, src, i));
    for (const mode of MODES) {
      const col = (k: keyof Row) =>
        `${Math.round(median(rows[mode].map((r) => r[k])))} (${rows[mode].map((r) => Math.round(r[k])).join('/')})`;
      console.log(
        `${name} (${mb} MB) ${mode}: ready ${col('ready')} | output ${col('output')} | image ${col('image')}` +
          ` | total ${col('total')} | read ${col('read')} ms`,
      );
    }
  }
} finally {
  await d.stopAll();
  rmSync(tmp, { recursive: true, force: true });
}
