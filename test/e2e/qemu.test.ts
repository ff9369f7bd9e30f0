/**
 * QemuDriver against real guests (TCG where KVM does not work): the guest image from
 * infra/guest/build.sh, busybox rootfs shared over virtio-9p. One VM serves most cases; the failure
 * cases boot their own and check that nothing (process, socket, file) is left behind. Adoption: a
 * driver lets go of its VMs as a killed worker would, and a new driver takes them over.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CorralError, err } from '../../src/errors.ts';
import type { BootSpec, ProcessSpec } from '../../src/domain/ops.ts';
import type { ExitEvent, VmExitEvent } from '../../src/workers/hypervisor/hypervisor.ts';
import { QemuDriver, type QemuDriverOptions } from '../../src/workers/hypervisor/qemu.ts';
import { kvmPossible, parseQemuCmdline, qemuArgs, vmPaths } from '../../src/workers/hypervisor/qemu-args.ts';
import {
  AgentChannel,
  FRAME,
  STATE_MAGIC,
  type AgentMsg,
  type ResyncInfo,
} from '../../src/workers/hypervisor/agent-channel.ts';
import { processesMatching } from '../helpers/leaks.ts';
import { waitFor, within } from '../helpers/wait.ts';

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
if (!hasQemu) console.warn('qemu e2e: SKIPPED, qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)');
if (!isRoot) console.warn('qemu e2e: SKIPPED, needs root (9p passthrough, setpriv)');

const RUN = `t${process.pid}`;
/** Every driver here tags its QEMUs: a node's worker on this host never reports or stops them. */
const OWNER = `qemu-test-${process.pid}`;
const driver = (o: QemuDriverOptions = {}) => new QemuDriver({ owner: OWNER, ...o });
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
    sandboxId: `${RUN}-${sandboxId}`,
    vcpus: 1,
    memoryMiB: 256,
    kernel: join(GUEST, 'vmlinux'),
    initrd: join(GUEST, 'initramfs.cpio.gz'),
    kernelParams: '',
    machineType: 'microvm',
    accel: 'auto',
    sharedDir: shared,
    msize9p: 512000,
    runDir: join(tmp, 'run'),
    ...over,
  };
}

/** Run one process to its end: output by fd and the exit status. */
async function run(
  d: QemuDriver,
  sandboxId: string,
  p: Partial<ProcessSpec> & { containerId: string; args: string[] },
) {
  const out = { 1: '', 2: '' };
  const onOut = (s: string, c: string, fd: 1 | 2, b: Uint8Array) => {
    if (s === sandboxId && c === p.containerId) out[fd] += Buffer.from(b).toString();
  };
  d.on('output', onOut);
  try {
    const exited = nextExit(d, sandboxId, p.containerId);
    await d.startProcess({
      sandboxId,
      env: ['PATH=/bin'],
      cwd: '/',
      uid: 0,
      gid: 0,
      additionalGids: [],
      terminal: false,
      ...p,
    });
    const e = await exited;
    return { status: e.exitStatus, stdout: out[1], stderr: out[2], exitedAt: e.exitedAt };
  } finally {
    d.off('output', onOut);
  }
}

function nextExit(d: QemuDriver, sandboxId: string, containerId: string, ms = 30_000): Promise<ExitEvent> {
  let on: (e: ExitEvent) => void = () => {};
  const exit = new Promise<ExitEvent>((res) => {
    on = (e) => {
      if (e.sandboxId === sandboxId && e.containerId === containerId) res(e);
    };
    d.on('exit', on);
  });
  return within(exit, { timeoutMs: ms, what: `the exit of ${containerId} in ${sandboxId}` }).finally(() =>
    d.off('exit', on),
  );
}

/** Nothing of this sandbox is left: no process with its marker, no file in the run dir. */
function expectGone(sandboxId: string, runDir = join(tmp, 'run')): void {
  expect(processesMatching(`corral-${sandboxId}`)).toEqual([]);
  expect(existsSync(runDir) ? readdirSync(runDir).filter((f) => f.includes(sandboxId)) : []).toEqual([]);
}

async function rejection(p: Promise<unknown>): Promise<CorralError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(CorralError);
    return e as CorralError;
  }
  throw new Error('expected a rejection');
}

describe.skipIf(!hasQemu || !isRoot)('QemuDriver (real guests)', () => {
  beforeAll(() => {
    execFileSync('bash', [join(REPO, 'infra/guest/build.sh'), GUEST], { stdio: 'inherit', timeout: 900_000 });
    tmp = mkdtempSync(join(tmpdir(), 'corral-qemu-'));
    chmodSync(tmp, 0o755); // the rootless QEMU must reach the shared dir
    shared = join(tmp, 'shared');
    mkdirSync(shared);
    for (const c of [
      'echo',
      'exit3',
      'kill9',
      'term',
      'a',
      'b',
      'ids',
      'path',
      'big',
      'stop',
      'crash',
      'q35',
      'ad-sleep',
      'ad-loop',
      'ad-exit',
      'ad-new',
      'ad-sync',
    ])
      rootfs(c);
  }, 900_000);

  afterAll(() => {
    expect(processesMatching(`corral-${RUN}-`)).toEqual([]);
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  describe('one guest, many processes', () => {
    const d = driver();
    const id = `${RUN}-main`;
    let boot: { pid: number; accel: 'kvm' | 'tcg'; bootMs: number };

    beforeAll(async () => {
      boot = await d.boot(spec('main'), AbortSignal.timeout(60_000));
    }, 120_000);
    afterAll(() => d.stopAll());

    it('boots to the agent, with auto accel picking what works here', () => {
      if (!kvmPossible()) expect(boot.accel).toBe('tcg');
      expect(d.detectedAccel).toBe(boot.accel);
      expect(d.list()).toMatchObject([{ sandboxId: id, pid: boot.pid, state: 'running' }]);
      expect(d.scanHost()).toContainEqual({ pid: boot.pid, sandboxId: id, owner: OWNER });
      expect(
        driver({ owner: 'another-node' })
          .scanHost()
          .map((v) => v.pid),
      ).not.toContain(boot.pid); // never another node's
      console.log(`boot (${boot.accel}): ${boot.bootMs} ms`);
    });

    it('echo hello: output arrives, exit 0', async () => {
      expect(await run(d, id, { containerId: 'echo', args: ['echo', 'hello'] })).toMatchObject({
        status: 0,
        stdout: 'hello\n',
        stderr: '',
      });
    });

    it("sh -c 'exit 3' exits 3, stderr is fd 2", async () => {
      expect(await run(d, id, { containerId: 'exit3', args: ['sh', '-c', 'echo oops >&2; exit 3'] })).toMatchObject({
        status: 3,
        stdout: '',
        stderr: 'oops\n',
      });
    });

    it('signals: SIGKILL → 137, SIGTERM → 143; unknown containers are not signalled', async () => {
      for (const [cid, sig, status] of [
        ['kill9', 9, 137],
        ['term', 15, 143],
      ] as const) {
        const exited = nextExit(d, id, cid);
        await d.startProcess({
          sandboxId: id,
          containerId: cid,
          args: ['sleep', '100'],
          env: [],
          cwd: '/',
          uid: 0,
          gid: 0,
          additionalGids: [],
          terminal: false,
        });
        expect(d.signal(id, cid, sig)).toEqual({ delivered: true });
        expect((await exited).exitStatus).toBe(status);
      }
      expect(d.signal(id, 'nobody', 9)).toEqual({ delivered: false });
      expect(() => d.signal('no-such-sandbox', 'x', 9)).toThrow(/no VM/);
    });

    it('two containers run concurrently in one guest', async () => {
      const [a, b] = await Promise.all(
        ['a', 'b'].map((c) => run(d, id, { containerId: c, args: ['sh', '-c', `sleep 1; echo ${c}`] })),
      );
      expect([a!.stdout, b!.stdout, a!.status, b!.status]).toEqual(['a\n', 'b\n', 0, 0]);
      // Each ran for a second; run one after the other they would end a second apart.
      expect(Math.abs(a!.exitedAt - b!.exitedAt)).toBeLessThan(800);
    });

    it('uid, gid, additional gids, env and cwd come from the spec', async () => {
      const r = await run(d, id, {
        containerId: 'ids',
        args: ['sh', '-c', 'id -u; id -g; id -G; pwd; echo "$FOO"'],
        env: ['PATH=/bin', 'FOO=bar baz'],
        cwd: '/tmp',
        uid: 1000,
        gid: 1001,
        additionalGids: [2000, 2001],
      });
      expect(r).toMatchObject({ status: 0, stdout: '1000\n1001\n1001 2000 2001\n/tmp\nbar baz\n', stderr: '' });
      // A relative cwd is taken inside the container root, never outside it.
      expect((await run(d, id, { containerId: 'ids', args: ['pwd'], cwd: 'tmp' })).stdout).toBe('/tmp\n');
    });

    it("args[0] is looked up in the env's PATH; a missing one fails the start", async () => {
      expect((await run(d, id, { containerId: 'path', args: ['echo', 'x'], env: ['PATH=/nowhere:/bin'] })).stdout).toBe(
        'x\n',
      );
      // default PATH
      expect((await run(d, id, { containerId: 'path', args: ['echo', 'y'], env: [] })).stdout).toBe('y\n');
      const e = await rejection(
        d.startProcess({
          sandboxId: id,
          containerId: 'path',
          args: ['nope'],
          env: ['PATH=/bin'],
          cwd: '/',
          uid: 0,
          gid: 0,
          additionalGids: [],
          terminal: false,
        }),
      );
      expect(e.code).toBe('NotFound');
      expect(e.message).toMatch(/exec nope: No such file/);
      const e2 = await rejection(
        d.startProcess({
          sandboxId: id,
          containerId: 'no-rootfs',
          args: ['true'],
          env: [],
          cwd: '/',
          uid: 0,
          gid: 0,
          additionalGids: [],
          terminal: false,
        }),
      );
      expect(e2.message).toMatch(/chroot/);
    });

    it('refuses what it cannot do: a second process per container id, a second VM per sandbox', async () => {
      const p = {
        sandboxId: id,
        containerId: 'dup',
        args: ['sleep', '100'],
        env: [],
        cwd: '/',
        uid: 0,
        gid: 0,
        additionalGids: [],
        terminal: false,
      };
      rootfs('dup');
      const exited = nextExit(d, id, 'dup');
      await d.startProcess(p);
      expect((await rejection(d.startProcess(p))).code).toBe('AlreadyExists');
      d.signal(id, 'dup', 9);
      expect((await exited).exitStatus).toBe(137);
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
      await d.startProcess({
        sandboxId: id,
        containerId: 'stop',
        args: ['sleep', '100'],
        env: [],
        cwd: '/',
        uid: 0,
        gid: 0,
        additionalGids: [],
        terminal: false,
      });
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
    const d = driver();
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
      await waitFor(() => d.list().find((v) => v.sandboxId === `${RUN}-early-stop`), {
        until: (v) => v?.state === 'booting' && v.pid > 0,
        intervalMs: 10,
        what: 'its QEMU launched and booting',
      });
      expect(await d.stop(`${RUN}-early-stop`)).toEqual({ stopped: true });
      expect((await booting).code).toBe('Cancelled');
      expectGone(`${RUN}-early-stop`);
    });

    it('a QEMU that cannot run → Internal', async () => {
      const bad = driver({ qemuPath: '/nonexistent/qemu' });
      const e = await rejection(bad.boot(spec('noqemu'), AbortSignal.timeout(10_000)));
      expect(e.code).toBe('Internal');
      expectGone(`${RUN}-noqemu`);
    });

    it('auto falls back to TCG when a KVM attempt fails, and remembers it', async () => {
      const fb = driver({ probeKvm: () => true, kvmProbeMs: 8000 });
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
    const d = driver();
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
      await d.startProcess({
        sandboxId: id,
        containerId: 'crash',
        args: ['sleep', '100'],
        env: [],
        cwd: '/',
        uid: 0,
        gid: 0,
        additionalGids: [],
        terminal: false,
      });
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

  describe('a new driver adopts the VMs an earlier one let go of, as a restarted worker does', () => {
    // Their own owner tag: adoptAll takes over every QEMU with it, and only these tests' VMs carry it.
    const adopter = (o: QemuDriverOptions = {}) => driver({ owner: `${OWNER}-adopt`, ...o });
    const drivers: QemuDriver[] = [];
    const track = (d: QemuDriver) => {
      drivers.push(d);
      return d;
    };
    afterAll(async () => {
      for (const d of drivers) await d.stopAll();
    });
    const proc = (sandboxId: string, containerId: string, args: string[]): ProcessSpec => ({
      sandboxId,
      containerId,
      args,
      env: ['PATH=/bin'],
      cwd: '/',
      uid: 0,
      gid: 0,
      additionalGids: [],
      terminal: false,
    });
    const numbers = (text: string) => text.split('\n').filter(Boolean).map(Number);

    it(
      'processes carry on, an exit that happened meanwhile is reported, ' +
        'output resumes in order, the VM works as a booted one',
      async () => {
        const id = `${RUN}-adopt`;
        const a = track(adopter());
        const boot = await a.boot(spec('adopt'), AbortSignal.timeout(60_000));
        let before = '';
        a.on('output', (s, c, _fd, d) => {
          if (s === id && c === 'ad-loop') before += Buffer.from(d).toString();
        });
        // ad-exit exits once the host says so (a file in its rootfs, over 9p); ad-sleep sees it gone and
        // says so (a file in its own rootfs), then sleeps on.
        const ad = (c: string, f: string) => join(shared, c, 'rootfs', f);
        const { pid: exitPid } = await a.startProcess(
          proc(id, 'ad-exit', ['sh', '-c', 'while [ ! -e /go ]; do sleep 0.05; done; exit 5']),
        );
        await a.startProcess(
          proc(id, 'ad-sleep', [
            'sh',
            '-c',
            `while kill -0 ${exitPid} 2>/dev/null; do sleep 0.05; done; echo > /ad-exit-gone; exec sleep 600`,
          ]),
        );
        await a.startProcess(
          proc(id, 'ad-loop', ['sh', '-c', 'i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done']),
        );
        await waitFor(() => numbers(before).length >= 3, { timeoutMs: 10_000, what: "ad-loop's first 3 lines" });
        const late: ExitEvent[] = [];
        a.on('exit', (e) => late.push(e));
        a.release();
        expect(a.list()).toEqual([]);
        // ad-exit exits while nobody listens (the guest reaps it and keeps its EXIT);
        // ad-loop's output waits in the guest.
        writeFileSync(ad('ad-exit', 'go'), '');
        await waitFor(() => existsSync(ad('ad-sleep', 'ad-exit-gone')), {
          timeoutMs: 10_000,
          what: 'ad-exit gone in the guest (ad-sleep says so)',
        });

        const b = track(adopter());
        const exits: ExitEvent[] = [];
        const vmExits: VmExitEvent[] = [];
        let after = '';
        b.on('exit', (e) => exits.push(e));
        b.on('vmExit', (e) => vmExits.push(e));
        b.on('output', (s, c, _fd, d) => {
          if (s === id && c === 'ad-loop') after += Buffer.from(d).toString();
        });
        const t0 = Date.now();
        const r = await b.adoptAll();
        console.log(`adoption: ${Date.now() - t0} ms; resync ${JSON.stringify(r.adopted[0]?.resync)}`);
        expect(r.stopped).toEqual([]);
        expect(r.adopted).toMatchObject([
          { sandboxId: id, pid: boot.pid, accel: boot.accel, exited: [{ containerId: 'ad-exit', status: 5 }] },
        ]);
        expect(r.adopted[0]!.running.sort()).toEqual(['ad-loop', 'ad-sleep']);
        await waitFor(() => exits.length > 0, { what: 'the exit of ad-exit reported after the adoption' });
        expect(exits).toMatchObject([{ kind: 'exit', sandboxId: id, containerId: 'ad-exit', exitStatus: 5 }]);
        expect(late).toEqual([]); // the driver that let go says nothing more
        expect(b.list()).toMatchObject([{ sandboxId: id, pid: boot.pid, state: 'running' }]);
        expect(b.list()[0]!.adoptedAt).toBeGreaterThan(0);
        expect(b.list()[0]!.processes.sort()).toEqual(['ad-loop', 'ad-sleep']);

        // Output resumes: what waited in the guest, then new lines; whole lines, in order, none twice.
        await waitFor(() => numbers(after).length >= 10, { timeoutMs: 10_000, what: "10 lines of ad-loop's output" });
        const [was, now] = [numbers(before), numbers(after)];
        console.log(`ad-loop: the first driver got 1..${was.at(-1)}, the adopter ${now[0]}..${now.at(-1)}`);
        expect(now.every((n, i) => i === 0 || n === now[i - 1]! + 1)).toBe(true);
        expect(now[0]).toBeGreaterThan(was.at(-1)!);

        // Signals, new processes (also under the id whose exit was just reported) and stop work as on a booted VM.
        const killed = nextExit(b, id, 'ad-sleep');
        expect(b.signal(id, 'ad-sleep', 9)).toEqual({ delivered: true });
        expect((await killed).exitStatus).toBe(137);
        expect(await run(b, id, { containerId: 'ad-new', args: ['echo', 'hi'] })).toMatchObject({
          status: 0,
          stdout: 'hi\n',
        });
        expect(await run(b, id, { containerId: 'ad-exit', args: ['sh', '-c', 'exit 7'] })).toMatchObject({ status: 7 });
        // A boot re-issued for the sandbox (its first outcome was lost with the worker) answers with the adopted VM.
        expect(await b.boot(spec('adopt'), AbortSignal.timeout(5000))).toEqual({
          pid: boot.pid,
          accel: boot.accel,
          bootMs: 0,
        });

        // A second hand-over: the exits acknowledged meanwhile are not reported again. The guest reads the
        // channel in order: once it has refused a start sent after those ACKs, it has read them.
        expect(await rejection(b.startProcess(proc(id, 'ad-sync', ['/no-such-program'])))).toMatchObject({
          code: 'NotFound',
          message: expect.stringMatching(/No such file/),
        });
        b.release();
        const c = track(adopter());
        const again: ExitEvent[] = [];
        c.on('exit', (e) => again.push(e));
        const r2 = await c.adoptAll();
        expect(r2.adopted).toMatchObject([{ sandboxId: id, pid: boot.pid, running: ['ad-loop'], exited: [] }]);
        const loopEnd = nextExit(c, id, 'ad-loop');
        expect(await c.stop(id)).toEqual({ stopped: true });
        expect((await loopEnd).exitStatus).toBe(255);
        expect(again.map((e) => e.containerId)).toEqual(['ad-loop']);
        expect(vmExits).toEqual([]);
        expectGone(id);
      },
    );

    it('a VM whose sockets are gone is stopped and reported as vmExit', async () => {
      const id = `${RUN}-adgone`;
      const a = track(adopter());
      const boot = await a.boot(spec('adgone'), AbortSignal.timeout(60_000));
      a.release();
      rmSync(vmPaths(join(tmp, 'run'), id).qmp);
      const b = track(adopter());
      const vmExit = new Promise<VmExitEvent>((res) => b.once('vmExit', res));
      const r = await b.adoptAll();
      expect(r).toMatchObject({
        adopted: [],
        stopped: [{ sandboxId: id, pid: boot.pid, reason: expect.stringMatching(/socket .* is gone/) }],
      });
      expect(await vmExit).toMatchObject({ kind: 'vmExit', sandboxId: id });
      expect(b.list()).toEqual([]);
      expectGone(id);
    });

    it('a VM that died unwatched: the registry tells, it is reported as vmExit and its files are removed', async () => {
      const id = `${RUN}-addead`;
      const registryPath = join(tmp, 'registry.json');
      const a = track(adopter({ registryPath }));
      const boot = await a.boot(spec('addead'), AbortSignal.timeout(60_000));
      expect(JSON.parse(readFileSync(registryPath, 'utf8'))).toMatchObject([{ sandboxId: id, pid: boot.pid }]);
      a.release();
      process.kill(boot.pid, 'SIGKILL');
      await waitFor(() => processesMatching(`corral-${id}`).length === 0, { what: `the QEMU of ${id} gone` });
      const b = track(adopter({ registryPath }));
      const vmExit = new Promise<VmExitEvent>((res) => b.once('vmExit', res));
      expect(await b.adoptAll()).toEqual({
        adopted: [],
        stopped: [],
        dead: [{ sandboxId: id, pid: boot.pid, reason: 'its QEMU exited while no worker watched it' }],
      });
      expect(await vmExit).toMatchObject({ kind: 'vmExit', sandboxId: id, code: null, signal: null });
      expect(JSON.parse(readFileSync(registryPath, 'utf8'))).toEqual([]);
      expectGone(id);
    });

    it('a VM whose QMP does not answer (QEMU stopped) is killed and reported as vmExit', async () => {
      const id = `${RUN}-adfrozen`;
      const a = track(adopter());
      const boot = await a.boot(spec('adfrozen'), AbortSignal.timeout(60_000));
      a.release();
      process.kill(boot.pid, 'SIGSTOP');
      const b = track(adopter());
      const vmExit = new Promise<VmExitEvent>((res) => b.once('vmExit', res));
      const r = await b.adoptAll();
      expect(r).toMatchObject({
        adopted: [],
        stopped: [{ sandboxId: id, pid: boot.pid, reason: expect.stringMatching(/QMP/) }],
      });
      expect(await vmExit).toMatchObject({ kind: 'vmExit', sandboxId: id });
      expectGone(id);
    });

    it('stop() during an adoption cancels it: the VM is stopped, no vmExit', async () => {
      const id = `${RUN}-adcancel`;
      const a = track(adopter());
      const boot = await a.boot(spec('adcancel'), AbortSignal.timeout(60_000));
      a.release();
      process.kill(boot.pid, 'SIGSTOP'); // QMP stays silent: the adoption waits
      const b = track(adopter());
      const vmExits: VmExitEvent[] = [];
      b.on('vmExit', (e) => vmExits.push(e));
      const adoption = b.adoptAll();
      expect(b.list()).toMatchObject([{ sandboxId: id, state: 'adopting' }]);
      expect(await b.stop(id)).toEqual({ stopped: true });
      expect(await adoption).toMatchObject({
        adopted: [],
        stopped: [{ sandboxId: id, reason: 'stopped while being adopted' }],
      });
      await new Promise((r) => setImmediate(r));
      expect(vmExits).toEqual([]);
      expectGone(id);
    });
  });
});

/** Guest→host frames as the guest agent writes them. */
const frame = (type: number, ...parts: Buffer[]): Buffer => {
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(5);
  head.writeUInt32BE(body.length + 1);
  head[4] = type;
  return Buffer.concat([head, body]);
};
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const str = (s: string) => Buffer.concat([u32(Buffer.byteLength(s)), Buffer.from(s)]);
const output = (cid: string, text: string) => frame(FRAME.OUTPUT, str(cid), Buffer.from([1]), str(text));
const exitFrame = (cid: string, status: number) => frame(FRAME.EXIT, str(cid), u32(status));
const stateFrame = (token: number, cs: [string, number, boolean, number][]) =>
  frame(
    FRAME.STATE,
    u32(STATE_MAGIC),
    u32(token),
    u32(cs.length),
    ...cs.flatMap(([c, pid, exited, status]) => [str(c), u32(pid), u32(exited ? 1 : 0), u32(status)]),
  );

describe('re-attaching to a guest (no QEMU needed)', () => {
  it("parseQemuCmdline reads back the sockets, accel and sandbox of qemuArgs' command line", () => {
    const runDir = '/tmp/odd,dir';
    const paths = vmPaths(runDir, 'sb-1');
    const s: BootSpec = {
      sandboxId: 'sb-1',
      vcpus: 1,
      memoryMiB: 128,
      kernel: '/k',
      initrd: '/i',
      kernelParams: '',
      machineType: 'q35',
      accel: 'kvm',
      sharedDir: '/s',
      msize9p: 8192,
      runDir,
    };
    expect(parseQemuCmdline(qemuArgs(s, { accel: 'kvm', paths }))).toEqual({
      sandboxId: 'sb-1',
      accel: 'kvm',
      qmp: paths.qmp,
      agent: paths.agent,
      console: paths.console,
    });
    expect(parseQemuCmdline(['qemu-system-x86_64', '-name', 'corral-x'])).toBeNull();
    expect(parseQemuCmdline(['qemu-system-x86_64', '-name', 'other'])).toBeNull();
  });

  /** A fake guest: a unix socket server that writes `bytes` to the channel once it has read LIST. */
  async function resync(bytes: (token: number) => Buffer): Promise<{ info: ResyncInfo; msgs: AgentMsg[] }> {
    const dir = mkdtempSync(join(tmpdir(), 'corral-resync-'));
    const path = join(dir, 'agent');
    let token = 0;
    const server = createServer((sock: Socket) =>
      sock.once('data', (d) => {
        expect(d[4]).toBe(FRAME.LIST);
        token = d.readUInt32BE(5);
        const b = bytes(token);
        sock.write(b.subarray(0, 7)); // in pieces: the STATE pattern may straddle reads
        setTimeout(() => sock.write(b.subarray(7)), 20);
      }),
    );
    await new Promise<void>((r) => server.listen(path, r));
    try {
      const ch = await AgentChannel.connect(path, { deadlineMs: Date.now() + 5000 }, 0x12345678);
      const msgs: AgentMsg[] = [];
      const info = new Promise<ResyncInfo>((r) => ch.once('resync', r));
      ch.on('msg', (m) => msgs.push(m));
      ch.send(frame(FRAME.LIST, u32(0x12345678)));
      const got = await info;
      await waitFor(() => msgs.some((m) => m.type === 'exit' && m.containerId === 'after'), {
        what: 'the exit frame after the STATE',
      });
      ch.close();
      return { info: got, msgs };
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it('whole frames before the STATE are kept, in order', async () => {
    const r = await resync((t) =>
      Buffer.concat([
        output('c', 'queued\n'),
        exitFrame('d', 5),
        stateFrame(t, [
          ['c', 7, false, 0],
          ['d', 8, true, 5],
        ]),
        exitFrame('after', 0),
      ]),
    );
    expect(r.info).toEqual({ discarded: 0, frames: 2 });
    expect(r.msgs.map((m) => m.type)).toEqual(['output', 'exit', 'state', 'exit']);
    expect(r.msgs[2]).toEqual({
      type: 'state',
      token: 0x12345678,
      containers: [
        { containerId: 'c', pid: 7, exited: false, status: 0 },
        { containerId: 'd', pid: 8, exited: true, status: 5 },
      ],
    });
  });

  it(
    'the rest of a half-sent frame (and an older STATE) before it: skipped, ' +
      'and the stream is whole again after it',
    async () => {
      const half = output('c', 'x'.repeat(100)).subarray(37);
      const r = await resync((t) =>
        Buffer.concat([
          half,
          output('c', 'lost\n'),
          stateFrame(t, [['c', 7, false, 0]]),
          output('c', 'new\n'),
          exitFrame('after', 0),
        ]),
      );
      expect(r.info).toEqual({ discarded: half.length + output('c', 'lost\n').length, frames: 0 });
      expect(r.msgs.map((m) => m.type)).toEqual(['state', 'output', 'exit']);
      expect(Buffer.from((r.msgs[1] as { data: Uint8Array }).data).toString()).toBe('new\n');
    },
  );
});
