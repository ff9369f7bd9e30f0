/**
 * QemuDriver against real guests (TCG where KVM does not work): the guest image from
 * infra/guest/build.sh, busybox rootfs shared over virtio-9p. One VM serves most cases; the failure
 * cases boot their own and check that nothing (process, socket, file) is left behind.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CorralError, err } from '../../src/errors.ts';
import type { BootSpec, ProcessSpec } from '../../src/workers/protocol.ts';
import { QemuDriver, type ExitEvent, type VmExitEvent } from '../../src/workers/hypervisor/qemu.ts';
import { kvmPossible } from '../../src/workers/hypervisor/qemu-args.ts';
import { processesMatching } from '../helpers/leaks.ts';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const GUEST = process.env.CORRAL_GUEST_DIR ?? join(REPO, '.corral/guest');
const hasQemu = (() => { try { execFileSync('qemu-system-x86_64', ['--version']); return true; } catch { return false; } })();
const isRoot = process.getuid?.() === 0;
if (!hasQemu) console.warn('qemu e2e: SKIPPED, qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)');
if (!isRoot) console.warn('qemu e2e: SKIPPED, needs root (9p passthrough, setpriv)');

const RUN = `t${process.pid}`;
const APPLETS = ['sh', 'echo', 'sleep', 'cat', 'id', 'pwd', 'seq', 'true', 'ls'];
let tmp = '';
let shared = '';

/** A busybox rootfs at `<shared>/<containerId>/rootfs`. */
function rootfs(containerId: string): void {
  const root = join(shared, containerId, 'rootfs');
  mkdirSync(join(root, 'bin'), { recursive: true });
  mkdirSync(join(root, 'tmp'));
  copyFileSync('/bin/busybox', join(root, 'bin/busybox'));
  for (const a of APPLETS) symlinkSync('busybox', join(root, 'bin', a));
}

function spec(sandboxId: string, over: Partial<BootSpec> = {}): BootSpec {
  return {
    sandboxId: `${RUN}-${sandboxId}`, vcpus: 1, memoryMiB: 256, kernel: join(GUEST, 'vmlinux'), initrd: join(GUEST, 'initramfs.cpio.gz'),
    kernelParams: '', machineType: 'microvm', accel: 'auto', sharedDir: shared, msize9p: 512000, runDir: join(tmp, 'run'), ...over,
  };
}

/** Run one process to its end: output by fd and the exit status. */
async function run(d: QemuDriver, sandboxId: string, p: Partial<ProcessSpec> & { containerId: string; args: string[] }) {
  const out = { 1: '', 2: '' };
  const onOut = (s: string, c: string, fd: 1 | 2, b: Uint8Array) => { if (s === sandboxId && c === p.containerId) out[fd] += Buffer.from(b).toString(); };
  d.on('output', onOut);
  try {
    const exited = nextExit(d, sandboxId, p.containerId);
    await d.startProcess({ sandboxId, env: ['PATH=/bin'], cwd: '/', uid: 0, gid: 0, additionalGids: [], terminal: false, ...p });
    const e = await exited;
    return { status: e.exitStatus, stdout: out[1], stderr: out[2], exitedAt: e.exitedAt };
  } finally {
    d.off('output', onOut);
  }
}

function nextExit(d: QemuDriver, sandboxId: string, containerId: string, ms = 30_000): Promise<ExitEvent> {
  return new Promise((res, rej) => {
    const t = setTimeout(() => { d.off('exit', on); rej(new Error(`no exit for ${containerId}`)); }, ms);
    const on = (e: ExitEvent) => { if (e.sandboxId === sandboxId && e.containerId === containerId) { clearTimeout(t); d.off('exit', on); res(e); } };
    d.on('exit', on);
  });
}

/** Nothing of this sandbox is left: no process with its marker, no file in the run dir. */
function expectGone(sandboxId: string, runDir = join(tmp, 'run')): void {
  expect(processesMatching(`corral-${sandboxId}`)).toEqual([]);
  expect(existsSync(runDir) ? readdirSync(runDir).filter((f) => f.includes(sandboxId)) : []).toEqual([]);
}

async function rejection(p: Promise<unknown>): Promise<CorralError> {
  try { await p; } catch (e) { expect(e).toBeInstanceOf(CorralError); return e as CorralError; }
  throw new Error('expected a rejection');
}

describe.skipIf(!hasQemu || !isRoot)('QemuDriver (real guests)', () => {
  beforeAll(() => {
    execFileSync('bash', [join(REPO, 'infra/guest/build.sh'), GUEST], { stdio: 'inherit', timeout: 900_000 });
    tmp = mkdtempSync(join(tmpdir(), 'corral-qemu-'));
    chmodSync(tmp, 0o755); // the rootless QEMU must reach the shared dir
    shared = join(tmp, 'shared');
    mkdirSync(shared);
    for (const c of ['echo', 'exit3', 'kill9', 'term', 'a', 'b', 'ids', 'path', 'big', 'stop', 'crash', 'q35']) rootfs(c);
  }, 900_000);

  afterAll(() => {
    expect(processesMatching(`corral-${RUN}-`)).toEqual([]);
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  describe('one guest, many processes', () => {
    const d = new QemuDriver();
    const id = `${RUN}-main`;
    let boot: { pid: number; accel: 'kvm' | 'tcg'; bootMs: number };

    beforeAll(async () => { boot = await d.boot(spec('main'), AbortSignal.timeout(60_000)); }, 120_000);
    afterAll(() => d.stopAll());

    it('boots to the agent, with auto accel picking what works here', () => {
      if (!kvmPossible()) expect(boot.accel).toBe('tcg');
      expect(d.detectedAccel).toBe(boot.accel);
      expect(d.list()).toMatchObject([{ sandboxId: id, pid: boot.pid, state: 'running' }]);
      expect(d.scanHost()).toContainEqual({ pid: boot.pid, sandboxId: id });
      console.log(`boot (${boot.accel}): ${boot.bootMs} ms`);
    });

    it('echo hello: output arrives, exit 0', async () => {
      expect(await run(d, id, { containerId: 'echo', args: ['echo', 'hello'] })).toMatchObject({ status: 0, stdout: 'hello\n', stderr: '' });
    });

    it("sh -c 'exit 3' exits 3, stderr is fd 2", async () => {
      expect(await run(d, id, { containerId: 'exit3', args: ['sh', '-c', 'echo oops >&2; exit 3'] })).toMatchObject({ status: 3, stdout: '', stderr: 'oops\n' });
    });

    it('signals: SIGKILL → 137, SIGTERM → 143; unknown containers are not signalled', async () => {
      for (const [cid, sig, status] of [['kill9', 9, 137], ['term', 15, 143]] as const) {
        const exited = nextExit(d, id, cid);
        await d.startProcess({ sandboxId: id, containerId: cid, args: ['sleep', '100'], env: [], cwd: '/', uid: 0, gid: 0, additionalGids: [], terminal: false });
        expect(d.signal(id, cid, sig)).toEqual({ delivered: true });
        expect((await exited).exitStatus).toBe(status);
      }
      expect(d.signal(id, 'nobody', 9)).toEqual({ delivered: false });
      expect(() => d.signal('no-such-sandbox', 'x', 9)).toThrow(/no VM/);
    });

    it('two containers run concurrently in one guest', async () => {
      const [a, b] = await Promise.all(['a', 'b'].map((c) => run(d, id, { containerId: c, args: ['sh', '-c', `sleep 1; echo ${c}`] })));
      expect([a!.stdout, b!.stdout, a!.status, b!.status]).toEqual(['a\n', 'b\n', 0, 0]);
      // Each ran for a second; run one after the other they would end a second apart.
      expect(Math.abs(a!.exitedAt - b!.exitedAt)).toBeLessThan(800);
    });

    it('uid, gid, additional gids, env and cwd come from the spec', async () => {
      const r = await run(d, id, {
        containerId: 'ids', args: ['sh', '-c', 'id -u; id -g; id -G; pwd; echo "$FOO"'],
        env: ['PATH=/bin', 'FOO=bar baz'], cwd: '/tmp', uid: 1000, gid: 1001, additionalGids: [2000, 2001],
      });
      expect(r).toMatchObject({ status: 0, stdout: '1000\n1001\n1001 2000 2001\n/tmp\nbar baz\n', stderr: '' });
      // A relative cwd is taken inside the container root, never outside it.
      expect((await run(d, id, { containerId: 'ids', args: ['pwd'], cwd: 'tmp' })).stdout).toBe('/tmp\n');
    });

    it("args[0] is looked up in the env's PATH; a missing one fails the start", async () => {
      expect((await run(d, id, { containerId: 'path', args: ['echo', 'x'], env: ['PATH=/nowhere:/bin'] })).stdout).toBe('x\n');
      expect((await run(d, id, { containerId: 'path', args: ['echo', 'y'], env: [] })).stdout).toBe('y\n'); // default PATH
      const e = await rejection(d.startProcess({ sandboxId: id, containerId: 'path', args: ['nope'], env: ['PATH=/bin'], cwd: '/', uid: 0, gid: 0, additionalGids: [], terminal: false }));
      expect(e.code).toBe('NotFound');
      expect(e.message).toMatch(/exec nope: No such file/);
      const e2 = await rejection(d.startProcess({ sandboxId: id, containerId: 'no-rootfs', args: ['true'], env: [], cwd: '/', uid: 0, gid: 0, additionalGids: [], terminal: false }));
      expect(e2.message).toMatch(/chroot/);
    });

    it('refuses what it cannot do: a second process per container id, terminals, a second VM per sandbox', async () => {
      const p = { sandboxId: id, containerId: 'dup', args: ['sleep', '100'], env: [], cwd: '/', uid: 0, gid: 0, additionalGids: [], terminal: false };
      rootfs('dup');
      const exited = nextExit(d, id, 'dup');
      await d.startProcess(p);
      expect((await rejection(d.startProcess(p))).code).toBe('AlreadyExists');
      d.signal(id, 'dup', 9);
      expect((await exited).exitStatus).toBe(137);
      expect((await rejection(d.startProcess({ ...p, terminal: true }))).code).toBe('NotImplemented');
      expect((await rejection(d.boot(spec('main'), AbortSignal.timeout(5000)))).code).toBe('AlreadyExists');
    });

    it('large output arrives whole and in order', async () => {
      const r = await run(d, id, { containerId: 'big', args: ['seq', '1', '100000'] });
      const lines = r.stdout.split('\n');
      expect([r.status, lines.length, lines[0], lines[99_999]]).toEqual([0, 100_001, '1', '100000']);
    });

    it('stop() ends the VM: running processes exit 255, no vmExit, nothing left', async () => {
      const vmExits: VmExitEvent[] = [];
      d.on('vmExit', (e) => vmExits.push(e));
      const exited = nextExit(d, id, 'stop');
      await d.startProcess({ sandboxId: id, containerId: 'stop', args: ['sleep', '100'], env: [], cwd: '/', uid: 0, gid: 0, additionalGids: [], terminal: false });
      expect(await d.stop(id, Date.now() + 10_000)).toEqual({ stopped: true });
      expect((await exited).exitStatus).toBe(255);
      expectGone(id);
      expect(d.list()).toEqual([]);
      expect(await d.stop(id)).toEqual({ stopped: false }); // idempotent
      await new Promise((r) => setImmediate(r));
      expect(vmExits).toEqual([]);
    });
  });

  describe('failed boots leave nothing behind', () => {
    const d = new QemuDriver();
    afterAll(() => d.stopAll());

    it('a deadline that passes → Timeout', async () => {
      const ac = new AbortController();
      setTimeout(() => ac.abort(err.timeout('hypervisor.boot passed its deadline')), 700);
      const e = await rejection(d.boot(spec('deadline'), ac.signal));
      expect(e.code).toBe('Timeout');
      expectGone(`${RUN}-deadline`);
    });

    it('an initrd without the agent → the guest panics, QEMU exits, Internal with the console tail', async () => {
      const bogus = join(tmp, 'bogus.cpio.gz');
      mkdirSync(join(tmp, 'bogus'));
      writeFileSync(join(tmp, 'bogus/hello.txt'), 'no init here\n');
      execFileSync('sh', ['-c', `cd ${tmp}/bogus && find . | cpio -o -H newc --quiet | gzip > ${bogus}`]);
      const e = await rejection(d.boot(spec('bogus', { initrd: bogus }), AbortSignal.timeout(60_000)));
      expect(e.code).toBe('Internal');
      expect(e.message).toMatch(/exited .* before the guest agent was ready/);
      expect(e.message).toMatch(/Kernel panic|panic\+/);
      expectGone(`${RUN}-bogus`);
    });

    it('stop() while booting cancels the boot', async () => {
      const booting = rejection(d.boot(spec('early-stop'), AbortSignal.timeout(60_000)));
      await new Promise((r) => setTimeout(r, 400));
      expect(await d.stop(`${RUN}-early-stop`)).toEqual({ stopped: true });
      expect((await booting).code).toBe('Cancelled');
      expectGone(`${RUN}-early-stop`);
    });

    it('a QEMU that cannot run → Internal', async () => {
      const bad = new QemuDriver({ qemuPath: '/nonexistent/qemu' });
      const e = await rejection(bad.boot(spec('noqemu'), AbortSignal.timeout(10_000)));
      expect(e.code).toBe('Internal');
      expectGone(`${RUN}-noqemu`);
    });

    it('auto falls back to TCG when a KVM attempt fails, and remembers it', async () => {
      const fb = new QemuDriver({ probeKvm: () => true, kvmProbeMs: 8000 });
      try {
        const r = await fb.boot(spec('fallback'), AbortSignal.timeout(60_000));
        if (!kvmPossible()) expect(r.accel).toBe('tcg'); // KVM is broken on these machines (docs: machine-notes)
        expect(fb.detectedAccel).toBe(r.accel);
        expect(processesMatching(`corral-${RUN}-fallback`)).toEqual([r.pid]);
      } finally {
        await fb.stopAll();
      }
      expectGone(`${RUN}-fallback`);
    });
  });

  describe('other guests', () => {
    const d = new QemuDriver();
    afterAll(() => d.stopAll());

    it('rootless: QEMU runs as the VMM user; its death is a vmExit and ends its processes with 255', async () => {
      const uid = 64_000 + (process.pid % 1000);
      const runDir = join(tmp, `user-${uid}`);
      mkdirSync(runDir, { mode: 0o700 });
      chownSync(runDir, uid, uid);
      const user = { user: `corral-test-${uid}`, uid, gid: uid, groups: [uid + 1], runtimeDir: runDir };
      const id = `${RUN}-crash`;
      const r = await d.boot(spec('crash', { runDir, user }), AbortSignal.timeout(60_000));
      const status = readFileSync(`/proc/${r.pid}/status`, 'utf8');
      expect(status).toMatch(new RegExp(`^Uid:\\s+${uid}\\s+${uid}`, 'm'));
      expect(status).toMatch(new RegExp(`^Groups:\\s+${uid + 1}\\s*$`, 'm'));
      expect((await run(d, id, { containerId: 'crash', args: ['id', '-u'] })).stdout).toBe('0\n');

      const vmExit = new Promise<VmExitEvent>((res) => d.once('vmExit', res));
      const exited = nextExit(d, id, 'crash');
      await d.startProcess({ sandboxId: id, containerId: 'crash', args: ['sleep', '100'], env: [], cwd: '/', uid: 0, gid: 0, additionalGids: [], terminal: false });
      process.kill(r.pid, 'SIGKILL');
      expect((await exited).exitStatus).toBe(255);
      expect(await vmExit).toMatchObject({ kind: 'vmExit', sandboxId: id, code: null, signal: 'SIGKILL' });
      expectGone(id, runDir);
    });

    it('q35 boots too (PCI devices)', async () => {
      const r = await d.boot(spec('q35', { machineType: 'q35' }), AbortSignal.timeout(60_000));
      console.log(`q35 boot: ${r.bootMs} ms`);
      expect((await run(d, `${RUN}-q35`, { containerId: 'q35', args: ['echo', 'pci'] })).stdout).toBe('pci\n');
      await d.stop(`${RUN}-q35`);
      expectGone(`${RUN}-q35`);
    });
  });
});
