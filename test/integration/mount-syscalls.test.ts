/**
 * The mount worker's two ways into the kernel (src/workers/mount/mount-calls.ts): mount(2) in-process
 * through koffi, and mount(8) forked. Two workers over one real nats-server, real mounts (root) under a
 * temporary root: every request is made to both, and what the kernel shows afterwards (mountinfo) must be
 * the same. Nothing is left mounted (checked after each test).
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { request } from '../../src/bus/rpc.ts';
import { subjects } from '../../src/bus/subjects.ts';
import { CorralError } from '../../src/errors.ts';
import type { MountOps } from '../../src/domain/ops.ts';
import { startMountWorker, type MountWorker } from '../../src/workers/mount/main.ts';
import { parseMountInfo } from '../../src/workers/mount/mountinfo.ts';
import { Mounter } from '../../src/workers/mount/mounter.ts';
import { natsServer, type TestNats } from '../helpers/nats.ts';
import { mountsUnder, unmountUnder } from '../helpers/leaks.ts';

const WAYS = ['syscall', 'fork'] as const;
type Way = (typeof WAYS)[number];
const node = (w: Way) => `mnt-${w}`;

let nats: TestNats;
let root: string;
let journalDir: string;
const workers: MountWorker[] = [];
let seq = 0;
let caseNo = 0;

const opId = () => `op-${process.pid}-${++seq}`;
const deadlineMs = () => Date.now() + 10_000;
const call = <K extends keyof MountOps>(w: Way, op: K, body: Record<string, unknown>) =>
  request<MountOps[K]['res']>(
    nats.nc,
    subjects.worker(node(w), 'mount', op),
    { opId: opId(), deadlineMs: deadlineMs(), ...body },
    15_000,
  );
async function callErr(w: Way, op: keyof MountOps, body: Record<string, unknown>): Promise<CorralError> {
  try {
    await call(w, op, body);
  } catch (e) {
    if (e instanceof CorralError) return e;
    throw e;
  }
  throw new Error(`${op} was expected to fail`);
}
/** The per-mount options and fstype of the top mount on `p`, as the kernel shows them. */
function shown(p: string): { options: string[]; fstype: string; root: string } | undefined {
  const e = parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8'))
    .filter((m) => m.mountPoint === p)
    .at(-1);
  return e && { options: e.mountOptions, fstype: e.fstype, root: e.root };
}
const stack = (p: string) => mountsUnder(p).filter((m) => m === p).length;
const sh = (cmd: string, ...args: string[]) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
/** A fresh directory under the root for one way of one test. */
function caseDir(w: Way): string {
  const d = join(root, `c${++caseNo}-${w}`);
  mkdirSync(d);
  return d;
}

beforeAll(async () => {
  nats = await natsServer();
  root = mkdtempSync(join(tmpdir(), 'corral-mntsys-'));
  journalDir = mkdtempSync(join(tmpdir(), 'corral-mntsys-journal-'));
  for (const w of WAYS)
    workers.push(
      await startMountWorker({
        nc: nats.nc,
        node: node(w),
        roots: [root],
        journalPath: join(journalDir, `${w}.jsonl`),
        calls: w,
      }),
    );
});

afterEach(() => {
  const leaked = unmountUnder(root);
  expect(leaked, 'mounts left under the root').toEqual([]);
});

afterAll(async () => {
  for (const w of workers) await w.stop();
  if (root) {
    unmountUnder(root);
    rmSync(root, { recursive: true, force: true });
  }
  if (journalDir) rmSync(journalDir, { recursive: true, force: true });
  await nats?.cleanup();
});

describe('mount worker: mount(2) through koffi', () => {
  it('is what the worker uses when nothing says otherwise', () => {
    expect(workers.map((w) => w.mounter.calls.via)).toEqual(['mount(2)', 'mount(8)']);
    expect(workers[0]!.mounter.fallback).toBeUndefined();
  });

  it('a bind, then the same bind again (idempotent), then unmountAll, then unmountAll of nothing', async () => {
    for (const w of WAYS) {
      const dir = caseDir(w);
      const src = join(dir, 'src');
      mkdirSync(src);
      writeFileSync(join(src, 'f'), w);
      const target = join(dir, 'share', 'rootfs');
      expect(await call(w, 'bind', { source: src, target })).toEqual({ createdDir: true });
      expect(readFileSync(join(target, 'f'), 'utf8')).toBe(w);
      expect(shown(target)?.root).toMatch(/\/src$/);
      expect(await call(w, 'bind', { source: src, target })).toEqual({ createdDir: false });
      expect(stack(target)).toBe(1);
      expect(await call(w, 'unmountAll', { target })).toMatchObject({ unmounted: 1, lazy: false });
      expect(await call(w, 'unmountAll', { target, removeDir: true })).toMatchObject({
        unmounted: 0,
        removedDir: true,
      });
    }
  });

  it('a read-only bind keeps the nosuid and nodev of the mount its source lies on, as mount(8) does', async () => {
    const seen: Record<string, string[] | undefined> = {};
    for (const w of WAYS) {
      const dir = caseDir(w);
      const base = join(dir, 'base');
      mkdirSync(base);
      sh('mount', '-t', 'tmpfs', '-o', 'nosuid,nodev,size=1m', 'tput-base', base);
      mkdirSync(join(base, 'src'));
      const target = join(dir, 'ro');
      await call(w, 'bind', { source: join(base, 'src'), target, readonly: true });
      seen[w] = shown(target)?.options;
      expect(() => writeFileSync(join(target, 'x'), 'x')).toThrow(/EROFS/);
      // Made writable again by the same request without `readonly`.
      await call(w, 'bind', { source: join(base, 'src'), target, readonly: false });
      expect(shown(target)?.options).toContain('rw');
      await call(w, 'unmountAll', { target, removeDir: true });
      await call(w, 'unmountAll', { target: base });
    }
    expect(seen.syscall).toEqual(expect.arrayContaining(['ro', 'nosuid', 'nodev']));
    expect(seen.syscall).toEqual(seen.fork);
  });

  it('rootfs components with flags, data and propagation come out as mount(8) makes them', async () => {
    const seen: Record<string, unknown[]> = {};
    for (const w of WAYS) {
      const dir = caseDir(w);
      const src = join(dir, 'src');
      mkdirSync(src);
      const target = join(dir, 'rootfs');
      const mounts = [
        { type: 'tmpfs', source: 'tput-t', options: ['size=1m', 'nosuid', 'noexec', 'mode=0750'] },
        { type: 'bind', source: src, options: ['bind', 'ro', 'nodev', 'private'] },
      ];
      expect(await call(w, 'mountRootfs', { target, mounts })).toEqual({ mounted: 2, createdDir: true });
      const layers = parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8')).filter(
        (m) => m.mountPoint === target,
      );
      seen[w] = layers.map((l) => [l.fstype, l.mountOptions]);
      await call(w, 'unmountAll', { target, removeDir: true });
    }
    expect(seen.syscall).toEqual(seen.fork);
    expect(seen.syscall![1]).toEqual([expect.any(String), expect.arrayContaining(['ro', 'nodev'])]);
  });

  it('errors: a missing bind source is NotFound, an unknown filesystem type InvalidArgument naming errno', async () => {
    const dir = caseDir('syscall');
    const missing = await callErr('syscall', 'bind', { source: join(dir, 'nope'), target: join(dir, 't') });
    expect(missing.code).toBe('NotFound');
    expect(missing.message).toMatch(/bind source .*nope does not exist/);
    const e = await callErr('syscall', 'mountRootfs', {
      target: join(dir, 'rootfs'),
      mounts: [{ type: 'tmpfs', source: 'x', options: ['size=1m', 'no-such-option'] }],
    });
    expect(e.code).toBe('InvalidArgument');
    expect(e.message).toMatch(/failed to mount rootfs component tmpfs x: mount -t tmpfs .*\(EINVAL\)/);
    expect(mountsUnder(dir)).toEqual([]);
  });

  it('a busy mount is unmounted lazily near the deadline (MNT_DETACH), and says so', async () => {
    const dir = caseDir('syscall');
    const target = join(dir, 'busy');
    mkdirSync(target);
    sh('mount', '-t', 'tmpfs', 'tmpfs', target);
    writeFileSync(join(target, 'open'), 'x');
    const fd = openSync(join(target, 'open'), 'r');
    try {
      const r = await call('syscall', 'unmountAll', { target, removeDir: true, deadlineMs: Date.now() + 1500 });
      expect(r).toEqual({ unmounted: 1, lazy: true, removedDir: true });
    } finally {
      closeSync(fd);
    }
  });

  it('removeTree removes a nested tree in-process and never empties a mount that appeared below it', async () => {
    const dir = caseDir('syscall');
    const tree = join(dir, 'tree');
    mkdirSync(join(tree, 'a', 'b'), { recursive: true });
    writeFileSync(join(tree, 'a', 'b', 'f'), 'x');
    writeFileSync(join(tree, 'g'), 'y');
    const ctx = { signal: new AbortController().signal, deadlineMs: deadlineMs() };
    // A Mounter whose mountinfo shows nothing: the walk itself must notice the mount below.
    const blind = new Mounter({ roots: [root], mountInfo: () => Promise.resolve([]) });
    mkdirSync(join(tree, 'm'));
    sh('mount', '-t', 'tmpfs', 'tput-below', join(tree, 'm'));
    writeFileSync(join(tree, 'm', 'keep'), 'k');
    try {
      const e = await blind.removeTree({ path: tree }, ctx).then(
        () => undefined,
        (x: unknown) => x as CorralError,
      );
      expect(e?.code).toBe('Internal');
      expect(e?.message).toMatch(/tree\/m: it is on another filesystem/);
      expect(readFileSync(join(tree, 'm', 'keep'), 'utf8')).toBe('k');
    } finally {
      sh('umount', join(tree, 'm'));
    }
    expect(await call('syscall', 'removeTree', { path: tree })).toEqual({ removed: true });
    expect(await call('syscall', 'removeTree', { path: tree })).toEqual({ removed: false });
  });

  it('a burst of 300 binds at once (more than koffi queues) all succeed, and all unmount', async () => {
    const dir = caseDir('syscall');
    // Distinct sources and targets: no path lock orders them, all 300 reach mount(2) together.
    const pairs = Array.from({ length: 300 }, (_, i) => ({
      source: join(dir, 'src', String(i)),
      target: join(dir, 'burst', String(i)),
    }));
    for (const p of pairs) mkdirSync(p.source, { recursive: true });
    const made = await Promise.all(pairs.map((p) => call('syscall', 'bind', p)));
    expect(made.every((r) => r.createdDir)).toBe(true);
    expect(mountsUnder(join(dir, 'burst'))).toHaveLength(300);
    const undone = await Promise.all(
      pairs.map((p) => call('syscall', 'unmountAll', { target: p.target, removeDir: true })),
    );
    expect(undone.every((r) => r.unmounted === 1)).toBe(true);
    expect(mountsUnder(dir)).toEqual([]);
  });
});
