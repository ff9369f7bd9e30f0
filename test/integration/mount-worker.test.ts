/**
 * The mount worker over a real nats-server, doing real mounts (root) under a temporary root.
 * Every test leaves nothing mounted under the root (checked after each test).
 */
import { execFileSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { request } from '../../src/bus/rpc.ts';
import { decode, encode } from '../../src/bus/codec.ts';
import { subjects } from '../../src/bus/subjects.ts';
import { CorralError } from '../../src/errors.ts';
import type { MountOps } from '../../src/domain/ops.ts';
import type { Envelope as Reply } from '../../src/bus/rpc.ts';
import { startMountWorker, type MountWorker } from '../../src/workers/mount/main.ts';
import type { UnmountAllResult } from '../../src/workers/mount/mounter.ts';
import { natsServer, type TestNats } from '../helpers/nats.ts';
import { mountsUnder, processesMatching } from '../helpers/leaks.ts';
import { waitFor } from '../helpers/wait.ts';
import { run } from '../../src/workers/exec.ts';

const NODE = 'mnt-test';
let nats: TestNats;
let root: string;
let outside: string;
let journalDir: string;
let worker: MountWorker;
let seq = 0;

const opId = () => `op-${process.pid}-${++seq}`;
const deadline = (ms = 10_000) => Date.now() + ms;
const subject = (op: string, node = NODE) => subjects.worker(node, 'mount', op);

function call<K extends keyof MountOps>(
  op: K,
  body: Record<string, unknown>,
  node = NODE,
): Promise<MountOps[K]['res']> {
  return request<MountOps[K]['res']>(nats.nc, subject(op, node), body, 15_000);
}
async function callErr(op: string, body: unknown, node = NODE): Promise<CorralError> {
  try {
    await request(nats.nc, subject(op, node), body, 15_000);
  } catch (e) {
    if (e instanceof CorralError) return e;
    throw e;
  }
  throw new Error(`${op} was expected to fail`);
}
/** Send raw bytes, return the decoded reply envelope. */
async function raw(op: string, bytes: Uint8Array): Promise<Reply<unknown>> {
  const msg = await nats.nc.request(subject(op), bytes, { timeout: 15_000 });
  return decode(msg.data) as Reply<unknown>;
}

/** How many mounts are stacked on exactly `p`. */
const stackCount = (p: string) => mountsUnder(p).filter((m) => m === p).length;
const sh = (cmd: string, ...args: string[]) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
const tmpfs = (source = 'tmpfs', options = ['size=1m']) => ({ type: 'tmpfs', source, options });

let caseNo = 0;
/** A fresh directory under the root for one test. */
function sandboxDir(): string {
  const d = join(root, `sb${++caseNo}`);
  mkdirSync(d);
  return d;
}

function unmountEverythingUnder(dir: string) {
  for (let i = 0; i < 500; i++) {
    const left = mountsUnder(dir);
    if (left.length === 0) return;
    try {
      sh('umount', '-l', left[left.length - 1]!);
    } catch {
      /* raced */
    }
  }
}

beforeAll(async () => {
  nats = await natsServer();
  root = mkdtempSync(join(tmpdir(), 'corral-mnt-'));
  outside = mkdtempSync(join(tmpdir(), 'corral-outside-'));
  journalDir = mkdtempSync(join(tmpdir(), 'corral-mnt-journal-'));
  worker = await startMountWorker({
    nc: nats.nc,
    node: NODE,
    roots: [root],
    journalPath: join(journalDir, 'main.jsonl'),
  });
});

afterEach(() => {
  const leaked = mountsUnder(root);
  unmountEverythingUnder(root);
  expect(leaked, 'mounts left under the root').toEqual([]);
});

afterAll(async () => {
  await worker?.stop();
  if (root) {
    unmountEverythingUnder(root);
    rmSync(root, { recursive: true, force: true });
  }
  if (outside) rmSync(outside, { recursive: true, force: true });
  if (journalDir) rmSync(journalDir, { recursive: true, force: true });
  await nats?.cleanup();
});

describe('mount worker: start', () => {
  it('reports what it finds mounted under its roots on start', async () => {
    const dir = sandboxDir();
    mkdirSync(join(dir, 'a'));
    sh('mount', '-t', 'tmpfs', 'found-me', join(dir, 'a'));
    const logged: { obj: object; msg?: string }[] = [];
    const w = await startMountWorker({
      nc: nats.nc,
      node: 'mnt-start',
      roots: [dir],
      journalPath: join(journalDir, 'start.jsonl'),
      log: { info: (obj, msg) => logged.push({ obj, msg }), warn: () => {}, error: () => {} },
    });
    try {
      expect(w.found).toEqual([{ target: join(dir, 'a'), fstype: 'tmpfs', source: 'found-me' }]);
      expect(logged.map((l) => l.msg)).toEqual([
        'mount worker mounts through mount(2)',
        expect.stringMatching(/found 1 mount/),
      ]);
      const r = await call(
        'unmountAll',
        { opId: opId(), deadlineMs: deadline(), target: join(dir, 'a'), removeDir: true },
        'mnt-start',
      );
      expect(r).toEqual({ unmounted: 1, lazy: false, removedDir: true });
    } finally {
      await w.stop();
    }
  });
});

describe('mount worker: mountRootfs', () => {
  it('mounts a tmpfs onto a new 0711 directory; unmountAll removes mount and directory', async () => {
    const target = join(sandboxDir(), 'rootfs');
    const r = await call('mountRootfs', {
      opId: opId(),
      deadlineMs: deadline(),
      target,
      mounts: [tmpfs('rootfs-tmpfs')],
    });
    expect(r).toEqual({ mounted: 1, createdDir: true });
    expect(stackCount(target)).toBe(1);
    writeFileSync(join(target, 'hello'), 'x');

    const u = (await call('unmountAll', {
      opId: opId(),
      deadlineMs: deadline(),
      target,
      removeDir: true,
    })) as UnmountAllResult;
    expect(u).toEqual({ unmounted: 1, lazy: false, removedDir: true });
    expect(existsSync(target)).toBe(false);
  });

  it('creates the rootfs directory with mode 0711 (umask ignored), not recursively', async () => {
    const dir = sandboxDir();
    const target = join(dir, 'rootfs');
    await call('mountRootfs', { opId: opId(), deadlineMs: deadline(), target, mounts: [tmpfs()] });
    await call('unmountAll', { opId: opId(), deadlineMs: deadline(), target });
    expect(statSync(target).mode & 0o7777).toBe(0o711);
    rmSync(target, { recursive: true });

    const e = await callErr('mountRootfs', {
      opId: opId(),
      deadlineMs: deadline(),
      target: join(dir, 'missing', 'rootfs'),
      mounts: [tmpfs()],
    });
    expect(e.code).toBe('FailedPrecondition');
    expect(e.message).toMatch(/parent does not exist/);
    expect(existsSync(join(dir, 'missing'))).toBe(false);
  });

  it('bind-mounts a directory and a file, read-only when asked', async () => {
    const dir = sandboxDir();
    const src = join(dir, 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'data'), 'from-source');
    writeFileSync(join(dir, 'hosts'), '127.0.0.1 localhost\n');
    const target = join(dir, 'deep', 'er', 'target');

    expect(await call('bind', { opId: opId(), deadlineMs: deadline(), source: src, target, readonly: true })).toEqual({
      createdDir: true,
    });
    expect(readFileSync(join(target, 'data'), 'utf8')).toBe('from-source');
    expect(() => writeFileSync(join(target, 'new'), 'x')).toThrow(/EROFS|read-only/);
    // Same bind again (another opId): already there, nothing stacked.
    expect(await call('bind', { opId: opId(), deadlineMs: deadline(), source: src, target, readonly: true })).toEqual({
      createdDir: false,
    });
    expect(stackCount(target)).toBe(1);

    const rwTarget = join(dir, 'rw');
    await call('bind', { opId: opId(), deadlineMs: deadline(), source: src, target: rwTarget });
    writeFileSync(join(rwTarget, 'new'), 'y');
    expect(readFileSync(join(src, 'new'), 'utf8')).toBe('y');

    const fileTarget = join(dir, 'etc', 'hosts');
    expect(
      await call('bind', {
        opId: opId(),
        deadlineMs: deadline(),
        source: join(dir, 'hosts'),
        target: fileTarget,
        readonly: true,
      }),
    ).toEqual({ createdDir: true });
    expect(readFileSync(fileTarget, 'utf8')).toContain('localhost');

    // A different source onto an occupied target is refused.
    const other = join(dir, 'other');
    mkdirSync(other);
    expect((await callErr('bind', { opId: opId(), deadlineMs: deadline(), source: other, target })).code).toBe(
      'FailedPrecondition',
    );

    // A bind as a rootfs component (containerd's {type: bind, options: [rbind, ro]}), twice.
    const rootfs = join(dir, 'rootfs');
    const bindRootfs = {
      deadlineMs: deadline(),
      target: rootfs,
      mounts: [{ type: 'bind', source: src, options: ['rbind', 'ro'] }],
    };
    expect(await call('mountRootfs', { ...bindRootfs, opId: opId() })).toEqual({ mounted: 1, createdDir: true });
    expect(await call('mountRootfs', { ...bindRootfs, opId: opId() })).toEqual({ mounted: 1, createdDir: false });
    expect(stackCount(rootfs)).toBe(1);
    expect(readFileSync(join(rootfs, 'data'), 'utf8')).toBe('from-source');

    for (const t of [target, rwTarget, fileTarget, rootfs]) {
      expect(await call('unmountAll', { opId: opId(), deadlineMs: deadline(), target: t, removeDir: true })).toEqual({
        unmounted: 1,
        lazy: false,
        removedDir: true,
      });
      expect(existsSync(t)).toBe(false);
    }
    expect(readFileSync(join(src, 'data'), 'utf8')).toBe('from-source');
    expect(readFileSync(join(dir, 'hosts'), 'utf8')).toContain('localhost');
  });

  it('a bind that fails after creating its target removes the target and the parents it created', async () => {
    const dir = sandboxDir();
    const node = 'mnt-fault';
    const w = await startMountWorker({
      nc: nats.nc,
      node,
      roots: [root],
      journalPath: join(journalDir, 'fault.jsonl'),
      afterCreate: (_op, target) => {
        if (target.includes('fail-here')) throw new CorralError('Unavailable', 'injected failure after create');
      },
    });
    try {
      const src = join(dir, 'src');
      mkdirSync(src);
      writeFileSync(join(dir, 'file'), 'x');
      mkdirSync(join(dir, 'kept'));
      for (const [source, target] of [
        [src, join(dir, 'kept', 'new', 'er', 'fail-here')],
        [join(dir, 'file'), join(dir, 'kept', 'p', 'fail-here')],
      ] as const) {
        const e = await callErr('bind', { opId: opId(), deadlineMs: deadline(), source, target }, node);
        expect(e.code).toBe('Unavailable');
        expect(e.message).toBe('injected failure after create');
        expect(readdirSync(join(dir, 'kept'))).toEqual([]); // the pre-existing parent stays, the rest is gone
      }
      const e2 = await callErr(
        'mountRootfs',
        { opId: opId(), deadlineMs: deadline(), target: join(dir, 'fail-here'), mounts: [tmpfs()] },
        node,
      );
      expect(e2.code).toBe('Unavailable');
      expect(existsSync(join(dir, 'fail-here'))).toBe(false);
      expect(mountsUnder(dir)).toEqual([]);
    } finally {
      await w.stop();
    }
  });

  it('a bind of a missing source is NotFound and creates nothing', async () => {
    const dir = sandboxDir();
    const e = await callErr('bind', {
      opId: opId(),
      deadlineMs: deadline(),
      source: join(dir, 'nope'),
      target: join(dir, 'a', 'b'),
    });
    expect(e.code).toBe('NotFound');
    expect(existsSync(join(dir, 'a'))).toBe(false);
  });

  it('mounts an overlay with two lower layers', async () => {
    const dir = sandboxDir();
    const [l1, l2, up, work] = ['lower1', 'lower2', 'upper', 'work'].map((n) => join(dir, n)) as [
      string,
      string,
      string,
      string,
    ];
    for (const d of [l1, l2, up, work]) mkdirSync(d);
    writeFileSync(join(l1, 'both'), 'from-lower1');
    writeFileSync(join(l2, 'both'), 'from-lower2');
    writeFileSync(join(l2, 'only2'), 'lower2-only');
    const target = join(dir, 'rootfs');

    const r = await call('mountRootfs', {
      opId: opId(),
      deadlineMs: deadline(),
      target,
      mounts: [
        { type: 'overlay', source: 'overlay', options: [`lowerdir=${l1}:${l2}`, `upperdir=${up}`, `workdir=${work}`] },
      ],
    });
    expect(r).toEqual({ mounted: 1, createdDir: true });
    expect(readFileSync(join(target, 'both'), 'utf8')).toBe('from-lower1');
    expect(readFileSync(join(target, 'only2'), 'utf8')).toBe('lower2-only');
    writeFileSync(join(target, 'written'), 'w');
    expect(readFileSync(join(up, 'written'), 'utf8')).toBe('w');
    expect(existsSync(join(l1, 'written'))).toBe(false);

    expect((await worker.mounter.scan()).mounts.filter((m) => m.target === target)).toEqual([
      { target, fstype: 'overlay', source: 'overlay' },
    ]);
    await call('unmountAll', { opId: opId(), deadlineMs: deadline(), target, removeDir: true });
  });

  it('a failing second entry undoes the first and removes the directory it created', async () => {
    const dir = sandboxDir();
    const target = join(dir, 'rootfs');
    const e = await callErr('mountRootfs', {
      opId: opId(),
      deadlineMs: deadline(),
      target,
      mounts: [tmpfs('first-ok'), { type: 'bogusfs', source: 'bogus-source', options: [] }],
    });
    expect(e.code).toBe('InvalidArgument');
    expect(e.message).toContain('failed to mount rootfs component bogusfs bogus-source');
    expect(e.message).toMatch(/unknown filesystem type/);
    expect(mountsUnder(root)).toEqual([]);
    expect(existsSync(target)).toBe(false);

    // A directory that existed before is kept.
    mkdirSync(target);
    const e2 = await callErr('mountRootfs', {
      opId: opId(),
      deadlineMs: deadline(),
      target,
      mounts: [tmpfs(), tmpfs(), { type: 'ext4', source: join(dir, 'no-such-device'), options: [] }],
    });
    expect(e2.message).toContain(`failed to mount rootfs component ext4 ${join(dir, 'no-such-device')}`);
    expect(mountsUnder(root)).toEqual([]);
    expect(existsSync(target)).toBe(true);
  });

  it('rejects an empty mount list', async () => {
    const e = await callErr('mountRootfs', {
      opId: opId(),
      deadlineMs: deadline(),
      target: join(sandboxDir(), 'rootfs'),
      mounts: [],
    });
    expect(e.code).toBe('InvalidArgument');
  });
});

describe('mount worker: idempotency', () => {
  it('a repeated opId returns the first outcome without mounting again', async () => {
    const target = join(sandboxDir(), 'rootfs');
    const id = opId();
    const body = { opId: id, deadlineMs: deadline(), target, mounts: [tmpfs()] };
    // Two at once (in flight) and one after.
    const [a, b] = await Promise.all([call('mountRootfs', body), call('mountRootfs', body)]);
    const c = await call('mountRootfs', body);
    expect(a).toEqual({ mounted: 1, createdDir: true });
    expect(b).toEqual(a);
    expect(c).toEqual(a);
    expect(stackCount(target)).toBe(1);

    // A failure is the first outcome too: the same opId keeps failing even once the cause is gone.
    const target2 = join(sandboxDir(), 'rootfs');
    const id2 = opId();
    const bad = {
      opId: id2,
      deadlineMs: deadline(),
      target: target2,
      mounts: [{ type: 'bogusfs', source: 'x', options: [] }],
    };
    const e1 = await callErr('mountRootfs', bad);
    const e2 = await callErr('mountRootfs', { ...bad, mounts: [tmpfs()] });
    expect(e2.toWire()).toEqual(e1.toWire());
    expect(stackCount(target2)).toBe(0);

    await call('unmountAll', { opId: opId(), deadlineMs: deadline(), target, removeDir: true });
  });

  it('a new worker with the same journal answers an old opId with the first outcome', async () => {
    const target = join(sandboxDir(), 'rootfs');
    const journalPath = join(journalDir, 'restart.jsonl');
    const node = 'mnt-restart';
    const id = opId();
    const body = { opId: id, deadlineMs: deadline(), target, mounts: [tmpfs()] };
    const badBody = { opId: `${id}-bad`, deadlineMs: deadline(), target: `${target}/../x`, mounts: [tmpfs()] };

    const w1 = await startMountWorker({ nc: nats.nc, node, roots: [root], journalPath });
    const first = await call('mountRootfs', body, node);
    const firstErr = await callErr('mountRootfs', badBody, node);
    await w1.stop();

    const w2 = await startMountWorker({ nc: nats.nc, node, roots: [root], journalPath });
    try {
      expect(w2.found).toContainEqual({ target, fstype: 'tmpfs', source: 'tmpfs' });
      expect(await call('mountRootfs', body, node)).toEqual(first);
      expect(first).toEqual({ mounted: 1, createdDir: true });
      expect((await callErr('mountRootfs', badBody, node)).toWire()).toEqual(firstErr.toWire());
      expect(stackCount(target)).toBe(1);
      // Without the journal (a new opId), the same mounts on the target are success too, not a second mount.
      expect(await call('mountRootfs', { ...body, opId: opId() }, node)).toEqual({ mounted: 1, createdDir: false });
      expect(stackCount(target)).toBe(1);
      // Different mounts on an occupied target: refused.
      const e = await callErr('mountRootfs', { ...body, opId: opId(), mounts: [tmpfs('another')] }, node);
      expect(e.code).toBe('FailedPrecondition');
      expect(stackCount(target)).toBe(1);
      await call('unmountAll', { opId: opId(), deadlineMs: deadline(), target, removeDir: true }, node);
    } finally {
      await w2.stop();
    }
  });
});

describe('mount worker: deadlines', () => {
  it('a deadline already passed is Timeout and mounts nothing', async () => {
    const target = join(sandboxDir(), 'rootfs');
    const e = await callErr('mountRootfs', { opId: opId(), deadlineMs: Date.now() - 1, target, mounts: [tmpfs()] });
    expect(e.code).toBe('Timeout');
    expect(existsSync(target)).toBe(false);
  });

  it('a deadline passing in the middle undoes every mount made so far', async () => {
    // Through mount(8) (a fork per layer): 120 layers take far longer than the deadline; mount(2) could
    // do them all in time. The undo after a deadline is the same code either way.
    const fork = await startMountWorker({
      nc: nats.nc,
      node: 'mnt-fork',
      roots: [root],
      journalPath: join(journalDir, 'fork.jsonl'),
      calls: 'fork',
    });
    const target = join(sandboxDir(), 'rootfs');
    const mounts = Array.from({ length: 120 }, (_, i) => tmpfs(`layer${i}`));
    const e = await callErr(
      'mountRootfs',
      { opId: opId(), deadlineMs: deadline(150), target, mounts },
      'mnt-fork',
    ).finally(() => fork.stop());
    expect(e.code).toBe('Timeout');
    const reached = Number(/failed to mount rootfs component tmpfs layer(\d+)/.exec(e.message)?.[1]);
    expect(reached).toBeGreaterThan(0); // some layers were mounted before the deadline passed
    expect(reached).toBeLessThan(mounts.length);
    expect(mountsUnder(root)).toEqual([]);
    expect(existsSync(target)).toBe(false);
  });
});

describe('mount worker: path rules', () => {
  const bad = (): [string, unknown][] => [
    ['relative', 'sb/rootfs'],
    ['with ..', `${root}/x/../../etc/rootfs`],
    ['outside the roots', '/etc/corral-must-not-exist'],
    ['the root itself', root],
    ['not normalized (//)', `${root}//x`],
    ['trailing slash', `${root}/x/`],
    ['a . segment', `${root}/./x`],
    ['through a symlink out of the root', `${root}/escape/rootfs`],
    ['a symlink itself', `${root}/escape`],
    ['a dangling symlink', `${root}/dangling/rootfs`],
    ['a dangling symlink itself', `${root}/dangling`],
    ['not a string', 42],
  ];

  it.each(['mountRootfs', 'bind', 'unmountAll', 'mkdir', 'removeTree'] as const)(
    '%s rejects bad paths with InvalidArgument',
    async (op) => {
      if (!existsSync(join(root, 'escape'))) symlinkSync(outside, join(root, 'escape'));
      if (!lstatSync(join(root, 'dangling'), { throwIfNoEntry: false }))
        symlinkSync('/corral-test-nowhere', join(root, 'dangling'));
      const src = sandboxDir();
      for (const [why, p] of bad()) {
        const body: Record<string, unknown> = { opId: opId(), deadlineMs: deadline() };
        if (op === 'mountRootfs') Object.assign(body, { target: p, mounts: [tmpfs()] });
        if (op === 'bind') Object.assign(body, { source: src, target: p });
        if (op === 'unmountAll') Object.assign(body, { target: p, removeDir: true });
        if (op === 'mkdir') Object.assign(body, { path: p, mode: 0o755 });
        if (op === 'removeTree') Object.assign(body, { path: p });
        const e = await callErr(op, body);
        expect(e.code, `${op} ${why}`).toBe('InvalidArgument');
      }
      if (op === 'bind') {
        // The source obeys the same rules.
        const e = await callErr('bind', {
          opId: opId(),
          deadlineMs: deadline(),
          source: '/etc',
          target: join(src, 't'),
        });
        expect(e.code).toBe('InvalidArgument');
        expect(e.message).toMatch(/source/);
      }
      expect(existsSync('/etc/corral-must-not-exist')).toBe(false);
      expect(existsSync(join(outside, 'rootfs'))).toBe(false);
    },
  );
});

describe('mount worker: unmountAll', () => {
  it('removes every layer of a stacked mount and the submounts, then the directory', async () => {
    const dir = sandboxDir();
    const target = join(dir, 'with space');
    mkdirSync(target);
    sh('mount', '-t', 'tmpfs', 'layer1', target);
    sh('mount', '-t', 'tmpfs', 'layer2', target);
    mkdirSync(join(target, 'sub'));
    sh('mount', '-t', 'tmpfs', 'sub', join(target, 'sub'));
    expect(mountsUnder(target)).toHaveLength(3);

    const r = await call('unmountAll', { opId: opId(), deadlineMs: deadline(), target, removeDir: true });
    expect(r).toEqual({ unmounted: 3, lazy: false, removedDir: true });
    expect(mountsUnder(dir)).toEqual([]);
    expect(existsSync(target)).toBe(false);

    // Nothing there: success, nothing to do.
    expect(await call('unmountAll', { opId: opId(), deadlineMs: deadline(), target, removeDir: true })).toEqual({
      unmounted: 0,
      lazy: false,
      removedDir: false,
    });
  });

  it('keeps a non-empty directory', async () => {
    const target = join(sandboxDir(), 'kept');
    mkdirSync(target);
    writeFileSync(join(target, 'file'), 'x');
    sh('mount', '-t', 'tmpfs', 'tmpfs', target);
    expect(await call('unmountAll', { opId: opId(), deadlineMs: deadline(), target, removeDir: true })).toEqual({
      unmounted: 1,
      lazy: false,
      removedDir: false,
    });
    expect(existsSync(join(target, 'file'))).toBe(true);
  });

  it('falls back to a lazy unmount only near the deadline, and says so', async () => {
    const target = join(sandboxDir(), 'busy');
    mkdirSync(target);
    sh('mount', '-t', 'tmpfs', 'tmpfs', target);
    writeFileSync(join(target, 'open'), 'x');
    const fd = openSync(join(target, 'open'), 'r'); // keeps the mount busy
    try {
      const t0 = Date.now();
      const r = await call('unmountAll', { opId: opId(), deadlineMs: deadline(1500), target, removeDir: true });
      const took = Date.now() - t0;
      expect(r).toEqual({ unmounted: 1, lazy: true, removedDir: true });
      expect(took).toBeGreaterThan(500); // it retried the ordinary unmount first
      expect(took).toBeLessThan(1500); // and answered within the deadline
      expect(mountsUnder(target)).toEqual([]);
    } finally {
      closeSync(fd);
    }
  });
});

describe('mount worker: removeTree and mkdir', () => {
  it('removeTree refuses while something is mounted below, and works after the unmount', async () => {
    const dir = sandboxDir();
    const tree = join(dir, 'tree');
    const target = join(tree, 'a', 'rootfs');
    mkdirSync(join(tree, 'a'), { recursive: true });
    writeFileSync(join(tree, 'file'), 'x');
    await call('mountRootfs', { opId: opId(), deadlineMs: deadline(), target, mounts: [tmpfs()] });
    writeFileSync(join(target, 'inside-mount'), 'precious');

    const e = await callErr('removeTree', { opId: opId(), deadlineMs: deadline(), path: tree });
    expect(e.code).toBe('FailedPrecondition');
    expect(e.message).toContain(target);
    expect(readFileSync(join(target, 'inside-mount'), 'utf8')).toBe('precious');
    expect(existsSync(join(tree, 'file'))).toBe(true);

    await call('unmountAll', { opId: opId(), deadlineMs: deadline(), target });
    expect(await call('removeTree', { opId: opId(), deadlineMs: deadline(), path: tree })).toEqual({ removed: true });
    expect(existsSync(tree)).toBe(false);
    expect(await call('removeTree', { opId: opId(), deadlineMs: deadline(), path: tree })).toEqual({ removed: false });
  });

  it('mkdir creates parents and exactly the mode asked for; existing is success', async () => {
    const dir = sandboxDir();
    const p = join(dir, 'x', 'y');
    expect(await call('mkdir', { opId: opId(), deadlineMs: deadline(), path: p, mode: 0o2770 })).toEqual({
      created: true,
    });
    expect(statSync(p).mode & 0o7777).toBe(0o2770);
    expect(await call('mkdir', { opId: opId(), deadlineMs: deadline(), path: p, mode: 0o700 })).toEqual({
      created: false,
    });
    writeFileSync(join(dir, 'file'), '');
    expect(
      (await callErr('mkdir', { opId: opId(), deadlineMs: deadline(), path: join(dir, 'file'), mode: 0o700 })).code,
    ).toBe('FailedPrecondition');
  });
});

describe('mount worker: scan', () => {
  it('finds exactly what is mounted under the roots, layer by layer', async () => {
    const dir = sandboxDir();
    const a = join(dir, 'a');
    const b = join(dir, 'b');
    const src = join(dir, 'src');
    mkdirSync(src);
    await call('mountRootfs', {
      opId: opId(),
      deadlineMs: deadline(),
      target: a,
      mounts: [tmpfs('bottom'), tmpfs('top')],
    });
    await call('bind', { opId: opId(), deadlineMs: deadline(), source: src, target: b });

    const { mounts } = await call('scan', {});
    expect(mounts.map((m) => m.target)).toEqual(mountsUnder(root));
    expect(mounts).toEqual([
      { target: a, fstype: 'tmpfs', source: 'bottom' },
      { target: a, fstype: 'tmpfs', source: 'top' },
      expect.objectContaining({ target: b }),
    ]);

    await call('unmountAll', { opId: opId(), deadlineMs: deadline(), target: a, removeDir: true });
    await call('unmountAll', { opId: opId(), deadlineMs: deadline(), target: b, removeDir: true });
    expect((await call('scan', {})).mounts).toEqual([]);
  });
});

describe('mount worker: bad input', () => {
  it('answers malformed requests with InvalidArgument and keeps serving', async () => {
    const target = join(sandboxDir(), 'rootfs');
    const ok = { opId: opId(), deadlineMs: deadline(), target, mounts: [tmpfs()] };

    const notMsgpack = await raw('mountRootfs', new Uint8Array([0xc1, 0xff, 0x00]));
    expect(notMsgpack).toMatchObject({ ok: false, error: { code: 'InvalidArgument' } });
    expect((notMsgpack as { error: { message: string } }).error.message).toMatch(/not MessagePack/);
    expect(await raw('mountRootfs', encode(42))).toMatchObject({
      ok: false,
      error: { code: 'InvalidArgument', message: expect.stringMatching(/must be a map/) },
    });
    expect(await raw('mountRootfs', new Uint8Array())).toMatchObject({ ok: false, error: { code: 'InvalidArgument' } });

    const cases: [string, unknown, RegExp][] = [
      ['formatDisk', ok, /unknown mount worker op/],
      ['mountRootfs', { ...ok, opId: undefined }, /opId/],
      ['mountRootfs', { ...ok, opId: 7 }, /opId/],
      ['mountRootfs', { ...ok, opId: opId(), target: 5 }, /target must be a string, got number/],
      ['mountRootfs', { ...ok, opId: opId(), mounts: 'tmpfs' }, /mounts must be an array, got string/],
      [
        'mountRootfs',
        { ...ok, opId: opId(), mounts: [{ source: 'x', options: [] }] },
        /mounts\[0\]\.type must be a string/,
      ],
      [
        'mountRootfs',
        { ...ok, opId: opId(), mounts: [{ type: '../../tmp/evil', source: 'x', options: [] }] },
        /not a filesystem type/,
      ],
      [
        'mountRootfs',
        { ...ok, opId: opId(), mounts: [{ type: 'tmpfs', source: 'x', options: 'size=1m' }] },
        /options must be an array of strings/,
      ],
      [
        'mountRootfs',
        { ...ok, opId: opId(), mounts: [{ type: 'tmpfs', source: 'x', options: [1] }] },
        /options\[0\] must be a string/,
      ],
      ['mountRootfs', { ...ok, opId: opId(), mounts: [null] }, /mounts\[0\] must be a map/],
      [
        'bind',
        { opId: opId(), deadlineMs: deadline(), source: target, target, readonly: 'yes' },
        /readonly must be a boolean/,
      ],
      ['mkdir', { opId: opId(), deadlineMs: deadline(), path: target, mode: '0755' }, /mode must be an integer/],
      ['mkdir', { opId: opId(), deadlineMs: deadline(), path: target, mode: 0o10000 }, /mode must be an integer/],
      ['removeTree', { opId: opId(), deadlineMs: deadline() }, /path must be a string, got undefined/],
      ['unmountAll', { opId: opId(), deadlineMs: deadline(), target: [target] }, /target must be a string, got array/],
    ];
    for (const [op, body, msg] of cases) {
      const e = await callErr(op, body);
      expect(e.code, `${op} ${JSON.stringify(body)}`).toBe('InvalidArgument');
      expect(e.message).toMatch(msg);
    }
    expect(existsSync(target)).toBe(false);

    // Still serving.
    expect(await call('mountRootfs', ok)).toEqual({ mounted: 1, createdDir: true });
    await call('unmountAll', { opId: opId(), deadlineMs: deadline(), target, removeDir: true });
  });
});

describe('exec: the helper every mount effect runs through', () => {
  const code = async (p: Promise<unknown>) => {
    try {
      await p;
    } catch (e) {
      return e instanceof CorralError ? `${e.code}: ${e.message}` : `not a CorralError: ${String(e)}`;
    }
    return 'resolved';
  };

  it('returns code and output; a failure is a CorralError carrying stderr', async () => {
    expect(await run('sh', ['-c', 'echo out; echo err >&2'])).toEqual({ code: 0, stdout: 'out\n', stderr: 'err\n' });
    expect(await run('sh', ['-c', 'exit 3'], { okCodes: [0, 3] })).toMatchObject({ code: 3 });
    expect(await run('sh', ['-c', 'exit 3'], { okCodes: 'any' })).toMatchObject({ code: 3 });
    expect(await code(run('sh', ['-c', 'echo broken thing >&2; exit 2']))).toBe(
      'Internal: sh -c echo broken thing >&2; exit 2 exited with code 2: broken thing',
    );
    expect(await code(run('/nonexistent/binary', []))).toMatch(/^Internal: cannot run \/nonexistent\/binary/);
  });

  it('kills the child (SIGKILL, whole group) on abort and on timeout, and waits for it', async () => {
    const ac = new AbortController();
    const t0 = Date.now();
    const p = run('sh', ['-c', 'sleep 31.4159 & wait'], { signal: ac.signal });
    // Aborted once the whole group runs (sh and the sleep it started), so the kill has something to prove.
    await waitFor(() => processesMatching('sleep 31.4159').length === 2, {
      intervalMs: 10,
      what: 'sh and its sleep running',
    });
    ac.abort(new CorralError('Timeout', 'op passed its deadline'));
    expect(await code(p)).toBe('Timeout: op passed its deadline');
    expect(Date.now() - t0).toBeLessThan(3000);
    await waitFor(() => processesMatching('sleep 31.4159'), {
      until: (ps) => ps.length === 0,
      timeoutMs: 1000,
      intervalMs: 10,
      what: 'the grandchild killed with its group',
    });

    expect(await code(run('sh', ['-c', 'trap "" TERM; sleep 27.1828'], { timeoutMs: 100 }))).toMatch(
      /^Timeout: .*did not finish within 100 ms/,
    );
    await waitFor(() => processesMatching('sleep 27.1828'), {
      until: (ps) => ps.length === 0,
      timeoutMs: 1000,
      intervalMs: 10,
      what: 'the child that ignores SIGTERM killed',
    });

    const gone = new AbortController();
    gone.abort();
    expect(await code(run('true', [], { signal: gone.signal }))).toMatch(/^Cancelled/);
  });
});
