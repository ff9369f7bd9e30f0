/**
 * Guest agent protocol v3 against a real guest (QemuDriver, KVM where it works): execs, stdin with its
 * window, terminals, the container's mount namespace and mounts, per-container cgroups (limits, OOM,
 * stats, update, freeze), and an exec that carries on across a driver hand-over (as a restarted worker).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BootSpec, ExecSpec, GuestMount, ProcessSpec } from '../../src/domain/ops.ts';
import type { ExitEvent, OomEvent } from '../../src/workers/hypervisor/hypervisor.ts';
import { QemuDriver } from '../../src/workers/hypervisor/qemu.ts';
import { processesMatching } from '../helpers/leaks.ts';
import { waitFor } from '../helpers/wait.ts';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const GUEST = process.env.CORRAL_GUEST_DIR ?? join(REPO, '.corral/guest');
const hasQemu = (() => {
  try {
    execFileSync('qemu-system-x86_64', ['--version']);
    return true;
  } catch {
    return false;
  }
})();
const isRoot = process.getuid?.() === 0;
const RUN = `v3-${process.pid}`;
const OWNER = `guest-v3-test-${process.pid}`;
const SB = `${RUN}-vm`;
const MS = { RDONLY: 1, NOSUID: 2, NODEV: 4, NOEXEC: 8, BIND: 4096, REC: 16384 };

let tmp = '';
let shared = '';

function rootfs(containerId: string): void {
  const root = join(shared, containerId, 'rootfs');
  mkdirSync(join(root, 'bin'), { recursive: true });
  mkdirSync(join(root, 'tmp'));
  copyFileSync('/bin/busybox', join(root, 'bin/busybox'));
  for (const a of execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean))
    if (a !== 'busybox') symlinkSync('busybox', join(root, 'bin', a));
}

const boot = (): BootSpec => ({
  sandboxId: SB,
  vcpus: 2,
  memoryMiB: 512,
  kernel: join(GUEST, 'vmlinux'),
  initrd: join(GUEST, 'initramfs.cpio.gz'),
  kernelParams: '',
  machineType: 'microvm',
  accel: 'auto',
  sharedDir: shared,
  msize9p: 512000,
  runDir: join(tmp, 'run'),
});

const proc = (containerId: string, args: string[], over: Partial<ProcessSpec> = {}): ProcessSpec => ({
  sandboxId: SB,
  containerId,
  args,
  env: ['PATH=/bin'],
  cwd: '/',
  uid: 0,
  gid: 0,
  additionalGids: [],
  terminal: false,
  ...over,
});
const execOf = (containerId: string, execId: string, args: string[], over: Partial<ExecSpec> = {}): ExecSpec => ({
  ...proc(containerId, args),
  execId,
  ...over,
});

const proc_: GuestMount = {
  source: 'proc',
  target: '/proc',
  fstype: 'proc',
  flags: MS.NOSUID | MS.NODEV | MS.NOEXEC,
  data: '',
};
const devpts: GuestMount = {
  source: 'devpts',
  target: '/dev/pts',
  fstype: 'devpts',
  flags: MS.NOSUID | MS.NOEXEC,
  data: 'newinstance,ptmxmode=0666,mode=0620',
};
const tmpfs = (target: string, data = 'size=128m'): GuestMount => ({
  source: 'tmpfs',
  target,
  fstype: 'tmpfs',
  flags: MS.NOSUID,
  data,
});
const devBind = (dev: string): GuestMount => ({
  source: `/dev/${dev}`,
  target: `/dev/${dev}`,
  fstype: '',
  flags: MS.BIND,
  data: '',
  file: true,
});

/** Output of every process by key (`cid` or `cid/execId`), and its exit. */
function watch(d: QemuDriver) {
  const out = new Map<string, string>();
  const exits = new Map<string, ExitEvent>();
  const ooms: OomEvent[] = [];
  const order: string[] = [];
  const key = (c: string, e?: string) => (e === undefined ? c : `${c}/${e}`);
  d.on('output', (s, c, _fd, data, e) => {
    if (s === SB) out.set(key(c, e), (out.get(key(c, e)) ?? '') + Buffer.from(data).toString('latin1'));
  });
  d.on('exit', (e) => {
    if (e.sandboxId !== SB) return;
    exits.set(key(e.containerId, e.execId), e);
    order.push(`exit ${key(e.containerId, e.execId)}`);
  });
  d.on('oom', (e) => {
    ooms.push(e);
    order.push(`oom ${e.containerId}`);
  });
  const exited = (k: string, ms = 30_000) =>
    waitFor(() => exits.get(k), { timeoutMs: ms, what: `the exit of ${k}` }).then((e) => e!.exitStatus);
  const saw = (k: string, re: RegExp, ms = 15_000) =>
    waitFor(() => re.test(out.get(k) ?? ''), {
      timeoutMs: ms,
      what: () => `${re} in the output of ${k}: ${JSON.stringify(out.get(k))}`,
    });
  return { out, exits, ooms, order, exited, saw };
}

describe.skipIf(!hasQemu || !isRoot)('guest agent v3 (real guest)', () => {
  let d: QemuDriver;
  let w: ReturnType<typeof watch>;

  beforeAll(async () => {
    execFileSync('bash', [join(REPO, 'infra/guest/build.sh'), GUEST], { stdio: 'inherit', timeout: 900_000 });
    tmp = mkdtempSync(join(tmpdir(), 'corral-v3-'));
    chmodSync(tmp, 0o755);
    shared = join(tmp, 'shared');
    mkdirSync(shared);
    for (const c of ['ex', 'mnt', 'cat', 'big', 'tty', 'tty2', 'intr', 'oom', 'mem', 'pids', 'tick', 'adopt', 'gone'])
      rootfs(c);
    mkdirSync(join(shared, 'vol-ro'));
    mkdirSync(join(shared, 'vol-rw'));
    execFileSync('sh', ['-c', `echo from-host > ${join(shared, 'vol-ro', 'f')}`]);
    d = new QemuDriver({ owner: OWNER });
    w = watch(d);
    const b = await d.boot(boot(), AbortSignal.timeout(60_000));
    console.log(`booted ${SB}: ${b.accel} in ${b.bootMs} ms`);
  }, 900_000);

  afterAll(async () => {
    await d?.stopAll();
    expect(processesMatching(`corral-${RUN}`)).toEqual([]);
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('exec: exits with its code, its output carries its execId, it sees the container rootfs and mounts', async () => {
    await d.startProcess(
      proc('ex', ['sh', '-c', 'echo inside > /scratch/x; exec sleep 600'], { mounts: [tmpfs('/scratch')] }),
    );
    await waitFor(() => existsSync(join(shared, 'ex/rootfs/scratch')), { what: 'the tmpfs mount point' });
    const { pid } = await d.exec(execOf('ex', 'e1', ['sh', '-c', 'echo out; echo err >&2; exit 5']));
    expect(pid).toBeGreaterThan(1);
    expect(await w.exited('ex/e1')).toBe(5);
    expect(w.out.get('ex/e1')).toBe('out\nerr\n');
    // The container's tmpfs is in its mount namespace only: the host's rootfs dir has no file there.
    await waitFor(
      async () => {
        await d.exec(execOf('ex', `e2-${Date.now()}`, ['cat', '/scratch/x']));
        return [...w.out].some(([k, v]) => k.startsWith('ex/e2-') && v === 'inside\n');
      },
      { what: 'an exec reading the init’s file on its tmpfs', timeoutMs: 10_000, intervalMs: 200 },
    );
    expect(existsSync(join(shared, 'ex/rootfs/scratch/x'))).toBe(false);
    expect(await d.exec(execOf('ex', 'ls', ['ls', '/bin/busybox'])).then(() => w.exited('ex/ls'))).toBe(0);
    // An exec id in use, and an exec into a container that does not run.
    await d.exec(execOf('ex', 'long', ['sleep', '600']));
    await expect(d.exec(execOf('ex', 'long', ['true']))).rejects.toMatchObject({ code: 'AlreadyExists' });
    await expect(d.exec(execOf('nope', 'x', ['true']))).rejects.toMatchObject({ code: 'NotFound' });
    // The init's exit takes its execs along (cgroup.kill): 137 each.
    d.signal(SB, 'ex', 9);
    expect(await w.exited('ex')).toBe(137);
    expect(await w.exited('ex/long')).toBe(137);
  }, 60_000);

  it("stdin: 'abc' through cat; EOF ends it", async () => {
    await d.startProcess(proc('cat', ['cat'], { stdin: true }));
    await d.writeStdin({ sandboxId: SB, containerId: 'cat' }, Buffer.from('abc'));
    await d.closeStdin({ sandboxId: SB, containerId: 'cat' });
    expect(await w.exited('cat')).toBe(0);
    expect(w.out.get('cat')).toBe('abc');
  });

  it('stdin: 20 MB through cat arrive intact (sha256), in bounded memory', async () => {
    const total = 20 << 20;
    const inHash = createHash('sha256');
    const outHash = createHash('sha256');
    let got = 0;
    const onOut = (s: string, c: string, _fd: number, data: Uint8Array) => {
      if (s !== SB || c !== 'big') return;
      outHash.update(data);
      got += data.byteLength;
    };
    d.on('output', onOut);
    try {
      await d.startProcess(proc('big', ['cat'], { stdin: true }));
      global.gc?.();
      const rss0 = process.memoryUsage().rss;
      let peak = rss0;
      const t0 = performance.now();
      const block = randomBytes(1 << 20);
      for (let sent = 0; sent < total; sent += 64 << 10) {
        const chunk = block.subarray(sent % (1 << 20), (sent % (1 << 20)) + (64 << 10));
        inHash.update(chunk);
        await d.writeStdin({ sandboxId: SB, containerId: 'big' }, chunk);
        peak = Math.max(peak, process.memoryUsage().rss);
      }
      await d.closeStdin({ sandboxId: SB, containerId: 'big' });
      expect(await w.exited('big', 120_000)).toBe(0);
      const secs = (performance.now() - t0) / 1000;
      const rss1 = process.memoryUsage().rss;
      console.log(
        `20 MB through cat: ${(20 / secs).toFixed(1)} MB/s; test-process RSS ${(rss0 / 2 ** 20).toFixed(0)} → ` +
          `${(rss1 / 2 ** 20).toFixed(0)} MiB (peak ${(peak / 2 ** 20).toFixed(0)} MiB)`,
      );
      expect(got).toBe(total);
      expect(outHash.digest('hex')).toBe(inHash.digest('hex'));
      expect(peak - rss0).toBeLessThan(64 << 20);
    } finally {
      d.off('output', onOut);
    }
  }, 180_000);

  it('a terminal: tty names a pty, resize reaches stty size, ^C ends a sleep with 130', async () => {
    const mounts = [proc_, devpts];
    await d.startProcess(proc('tty', ['tty'], { terminal: true, mounts }));
    expect(await w.exited('tty')).toBe(0);
    expect(w.out.get('tty')).toMatch(/^\/dev\/pts\/\d+\r\n$/);

    await d.startProcess(
      proc('tty2', ['sh', '-c', 'stty size; read x; stty size'], {
        terminal: true,
        mounts,
        consoleSize: { rows: 24, cols: 80 },
      }),
    );
    await w.saw('tty2', /24 80/);
    await d.resize({ sandboxId: SB, containerId: 'tty2' }, { rows: 40, cols: 100 });
    await d.writeStdin({ sandboxId: SB, containerId: 'tty2' }, Buffer.from('go\r'));
    expect(await w.exited('tty2')).toBe(0);
    expect(w.out.get('tty2')).toMatch(/24 80\r\ngo\r\n40 100\r\n/);

    await d.startProcess(proc('intr', ['sh', '-c', 'echo ready; exec sleep 600'], { terminal: true }));
    await w.saw('intr', /ready/);
    await d.writeStdin({ sandboxId: SB, containerId: 'intr' }, Buffer.from([3]));
    expect(await w.exited('intr')).toBe(130);
    // A process without a terminal cannot be resized.
    await d.startProcess(proc('gone', ['sleep', '600']));
    await expect(d.resize({ sandboxId: SB, containerId: 'gone' }, { rows: 1, cols: 1 })).rejects.toMatchObject({
      code: 'FailedPrecondition',
    });
    d.signal(SB, 'gone', 9);
    expect(await w.exited('gone')).toBe(137);
  }, 60_000);

  it('mounts: proc and tmpfs there, a read-only bind not writable, a writable bind’s write on the host', async () => {
    const bind = (dir: string, target: string, ro: boolean): GuestMount => ({
      source: `/run/corral/shared/${dir}`,
      target,
      fstype: '',
      flags: MS.BIND | MS.REC | (ro ? MS.RDONLY : 0),
      data: '',
    });
    const script = [
      'test -e /proc/self/status && echo proc-ok',
      'grep -q " /t tmpfs " /proc/mounts && echo tmpfs-ok',
      'cat /ro/f',
      'touch /ro/g 2>&1 | grep -q Read-only && echo ro-refused',
      'echo written > /rw/h && echo rw-ok',
      'hostname',
    ].join('; ');
    await d.startProcess(
      proc('mnt', ['sh', '-c', script], {
        mounts: [proc_, tmpfs('/t'), bind('vol-ro', '/ro', true), bind('vol-rw', '/rw', false)],
        hostname: 'box1',
      }),
    );
    expect(await w.exited('mnt')).toBe(0);
    expect(w.out.get('mnt')).toBe('proc-ok\ntmpfs-ok\nfrom-host\nro-refused\nrw-ok\nbox1\n');
    expect(readFileSync(join(shared, 'vol-rw', 'h'), 'utf8')).toBe('written\n');
    expect(existsSync(join(shared, 'vol-ro', 'g'))).toBe(false);
  }, 30_000);

  it('limits: over memory.max 32M a process is OOM-killed: the oom event, then exit 137', async () => {
    const hog = 'x=$(head -c 100000000 /dev/zero | tr "\\0" a); echo survived';
    await d.startProcess(
      proc('oom', ['sh', '-c', hog], {
        mounts: [tmpfs('/dev', 'size=1m'), devBind('zero'), devBind('null')],
        limits: [
          { file: 'memory.max', value: String(32 << 20) },
          { file: 'memory.swap.max', value: '0' },
        ],
      }),
    );
    expect(await w.exited('oom')).toBe(137);
    expect(w.ooms).toMatchObject([{ kind: 'oom', sandboxId: SB, containerId: 'oom' }]);
    expect(w.order.filter((e) => e.endsWith(' oom'))).toEqual(['oom oom', 'exit oom']);
  }, 60_000);

  it('stats show the 64 MB a process holds; update lowers pids.max and a fork loop stops at it', async () => {
    await d.startProcess(
      proc('mem', ['sh', '-c', 'head -c 67108864 /dev/zero > /t/f && echo filled; exec sleep 600'], {
        mounts: [tmpfs('/t'), tmpfs('/dev', 'size=1m'), devBind('zero')],
      }),
    );
    await w.saw('mem', /filled/);
    const s = await d.stats(SB, 'mem');
    console.log(`stats of mem: ${JSON.stringify(s)}`);
    expect(s.memory.usage).toBeGreaterThanOrEqual(64 << 20);
    expect(s.memory.limit).toBeNull();
    expect(s.pids.current).toBeGreaterThanOrEqual(1);
    d.signal(SB, 'mem', 9);
    expect(await w.exited('mem')).toBe(137);

    await d.startProcess(
      proc('pids', ['sleep', '600'], {
        limits: [{ file: 'pids.max', value: '50' }],
        mounts: [tmpfs('/dev', 'size=1m'), devBind('null')],
      }),
    );
    expect((await d.stats(SB, 'pids')).pids.limit).toBe(50);
    await d.update(SB, 'pids', [{ file: 'pids.max', value: '6' }]);
    expect((await d.stats(SB, 'pids')).pids.limit).toBe(6);
    await d.exec(
      execOf('pids', 'bomb', [
        'sh',
        '-c',
        // ash exits when a fork fails: the loop runs in a subshell, the parent says it is done.
        `(for i in ${'x '.repeat(30)}; do sleep 600 & done); echo spawned`,
      ]),
    );
    await w.saw('pids/bomb', /spawned/);
    const after = await d.stats(SB, 'pids');
    expect(after.pids.current).toBeLessThanOrEqual(6);
    expect(w.out.get('pids/bomb')).toMatch(/fork|Resource temporarily unavailable|can't/i);
    await expect(d.update(SB, 'pids', [{ file: 'cgroup.procs' as 'pids.max', value: '1' }])).rejects.toMatchObject({
      code: 'InvalidArgument',
    });
    d.signal(SB, 'pids', 9);
    expect(await w.exited('pids')).toBe(137);
  }, 60_000);

  it('pause freezes a ticking process (no output), resume continues it', async () => {
    await d.startProcess(proc('tick', ['sh', '-c', 'i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done']));
    await w.saw('tick', /\n5\n/);
    await d.pause(SB, 'tick');
    // Frozen (cgroup.events said so): what was in flight arrives, then nothing. A stats round trip through
    // the same channel after a while shows the guest passed on everything it had.
    await d.stats(SB, 'tick');
    const frozenAt = w.out.get('tick')!.length;
    const t0 = Date.now();
    await waitFor(() => Date.now() - t0 > 1000, { what: 'a second of being frozen', intervalMs: 100 });
    await d.stats(SB, 'tick');
    expect(w.out.get('tick')!.length).toBe(frozenAt);
    await d.resume(SB, 'tick');
    await waitFor(() => w.out.get('tick')!.length > frozenAt + 10, { what: 'ticks after resume' });
    // Sandbox-wide pause (every container) and resume.
    await d.pause(SB);
    await d.resume(SB);
    d.signal(SB, 'tick', 9);
    expect(await w.exited('tick')).toBe(137);
  }, 30_000);

  it('a running exec carries on across a driver hand-over (a worker SIGKILLed) and reports its exit', async () => {
    await d.startProcess(proc('adopt', ['sleep', '600']));
    await d.exec(
      execOf('adopt', 'job', ['sh', '-c', 'while [ ! -e /go ]; do sleep 0.05; done; echo bye; exit 7'], {
        stdin: true,
      }),
    );
    d.release();
    const b = new QemuDriver({ owner: OWNER });
    const wb = watch(b);
    try {
      const r = await b.adoptAll();
      expect(r.adopted.map((a) => a.running.sort())).toEqual([expect.arrayContaining(['adopt', 'adopt/job'])]);
      // A resynced host starts with a full window: stdin still flows.
      await b.writeStdin({ sandboxId: SB, containerId: 'adopt', execId: 'job' }, Buffer.from('x'));
      execFileSync('touch', [join(shared, 'adopt/rootfs/go')]);
      expect(await wb.exited('adopt/job')).toBe(7);
      expect(wb.out.get('adopt/job')).toBe('bye\n');
      expect(wb.exits.get('adopt/job')).toMatchObject({ containerId: 'adopt', execId: 'job' });
    } finally {
      d = b; // afterAll stops the VM through the driver that has it now
      w = wb;
    }
  }, 60_000);
});
