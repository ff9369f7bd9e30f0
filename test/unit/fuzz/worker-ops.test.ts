/**
 * The workers' op validators (src/workers/mount/validate.ts; src/workers/hypervisor/validate.ts and
 * validate-net.ts, the stdin data plane's chunk parser included) on any decoded map and on valid
 * requests with one field broken: each answers typed arguments or InvalidArgument that starts with the
 * op and names the field, never another error. What the mount worker accepts is bounded (no NUL, at
 * most 8192 characters per string, fs types as mount(8) takes them, modes 0..0o7777).
 */
import { describe, expect, vi } from 'vitest';
import * as v from '../../../src/workers/hypervisor/validate.ts';
import {
  parseBind,
  parseMkdir,
  parseMountRootfs,
  parseRemoveTree,
  parseUnmountAll,
} from '../../../src/workers/mount/validate.ts';
import { fc, test } from './prop.ts';
import { RUNS, TIMEOUT_MS } from './runs.ts';
import { absPath } from './task-bodies.ts';
import { verdict } from './verdict.ts';
import { broken, throughCodec, wireMap } from './wire.ts';

vi.setConfig({ testTimeout: TIMEOUT_MS });

const mount = fc.record({
  type: fc.constantFrom('overlay', 'ext4', 'fuse.sshfs', 'nfs4', 'bind'),
  source: absPath,
  options: fc.array(fc.constantFrom('ro', 'lowerdir=/a:/b', 'upperdir=/u', 'x-systemd.automount'), { maxLength: 3 }),
});
const MOUNT_OPS = {
  mountRootfs: {
    parse: parseMountRootfs,
    valid: fc.record({ target: absPath, mounts: fc.array(mount, { minLength: 1, maxLength: 3 }) }),
  },
  bind: {
    parse: parseBind,
    valid: fc.record(
      { source: absPath, target: absPath, readonly: fc.boolean() },
      { requiredKeys: ['source', 'target'] },
    ),
  },
  unmountAll: {
    parse: parseUnmountAll,
    valid: fc.record({ target: absPath, removeDir: fc.boolean() }, { requiredKeys: ['target'] }),
  },
  mkdir: { parse: parseMkdir, valid: fc.record({ path: absPath, mode: fc.integer({ min: 0, max: 0o7777 }) }) },
  removeTree: { parse: parseRemoveTree, valid: fc.record({ path: absPath }) },
} as const;
type Op = keyof typeof MOUNT_OPS;
const MOUNT_KEYS = ['target', 'mounts', 'type', 'source', 'options', 'readonly', 'removeDir', 'path', 'mode', 'opId'];

const strings = (v: unknown): string[] =>
  typeof v === 'string' ? [v] : v && typeof v === 'object' ? Object.values(v).flatMap(strings) : [];

function bounded(op: Op, v: unknown) {
  for (const s of strings(v)) {
    expect(s).not.toContain('\0');
    expect(s.length).toBeLessThanOrEqual(8192);
  }
  if (op === 'mountRootfs')
    for (const m of (v as ReturnType<typeof parseMountRootfs>).mounts)
      expect(m.type).toMatch(/^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/);
  if (op === 'mkdir') expect((v as { mode: number }).mode).toSatisfy((m: number) => Number.isInteger(m) && m <= 0o7777);
}

describe.each(Object.keys(MOUNT_OPS) as Op[])('mount worker %s', (op) => {
  const { parse, valid } = MOUNT_OPS[op];
  const run = (req: unknown) => (parse as (r: Req) => unknown)(req as Req);
  test.prop([wireMap(MOUNT_KEYS)], { numRuns: RUNS })(
    'any decoded map: arguments, or InvalidArgument naming the op',
    (req) => {
      const r = verdict(() => run(req), { names: [`${op}:`] });
      if (r.ok) bounded(op, r.value);
    },
  );
  test.prop([broken(valid.map(throughCodec))], { numRuns: RUNS })(
    'a valid request with one field broken: arguments, or InvalidArgument naming that field',
    ({ value, names }) => {
      const r = verdict(() => run(value), { names });
      if (r.ok) bounded(op, r.value);
      else expect(r.error.message.startsWith(`${op}: `)).toBe(true);
    },
  );
});

type Req = Record<string, unknown>;
const id = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,11}$/);
const u32 = fc.nat(65535);
const ref = { sandboxId: id, containerId: id };
const plan = {
  args: fc.array(fc.stringMatching(/^[a-z/-]{0,8}$/), { minLength: 1, maxLength: 3 }),
  env: fc.array(fc.stringMatching(/^[A-Z]{1,4}=[a-z]{0,4}$/), { maxLength: 2 }),
  cwd: absPath,
  uid: u32,
  gid: u32,
  additionalGids: fc.array(u32, { maxLength: 2 }),
  terminal: fc.boolean(),
};
const size = fc.record({ rows: fc.nat(500), cols: fc.nat(500) });
const limit = fc.record({
  file: fc.constantFrom('memory.max', 'cpu.max', 'pids.max'),
  value: fc.constantFrom('max', '100'),
});
const guestMount = fc.record(
  {
    source: absPath,
    target: absPath,
    fstype: fc.constantFrom('bind', 'tmpfs'),
    flags: u32,
    data: fc.constant(''),
    file: fc.boolean(),
  },
  { requiredKeys: ['source', 'target', 'fstype', 'flags', 'data'] },
);
const network = fc.record({
  netns: absPath,
  nics: fc.array(
    fc.record({
      name: fc.constantFrom('eth0', 'eth1'),
      mac: fc.constant('02:00:00:00:00:01'),
      mtu: fc.constantFrom(1500, 9000),
      addrs: fc.array(fc.constantFrom('10.0.0.2/24', 'fd00::2/64'), { maxLength: 2 }),
      tap: fc.oneof(
        fc.record({ kind: fc.constant('tap'), name: fc.constant('tap0') }),
        fc.record({ kind: fc.constant('macvtap'), name: fc.constant('mvt0'), device: fc.constant('eth0') }),
      ),
    }),
    { maxLength: 2 },
  ),
  routes: fc.array(
    fc.record(
      {
        family: fc.constantFrom(4, 6),
        dst: fc.constant('default'),
        dev: fc.constant('eth0'),
        gateway: fc.constant('10.0.0.1'),
      },
      { requiredKeys: ['family', 'dst', 'dev'] },
    ),
    { maxLength: 2 },
  ),
});
const boot = fc
  .record(
    {
      sandboxId: id,
      vcpus: fc.integer({ min: 1, max: 8 }),
      memoryMiB: fc.constantFrom(256, 2048),
      kernel: absPath,
      initrd: absPath,
      kernelParams: fc.constantFrom('', 'quiet'),
      machineType: fc.constantFrom('q35', 'microvm'),
      accel: fc.constantFrom('auto', 'kvm', 'tcg'),
      sharedDir: absPath,
      msize9p: fc.constant(8192),
      runDir: absPath,
      user: fc.record({ user: id, uid: u32, gid: u32, groups: fc.array(u32, { maxLength: 2 }), runtimeDir: absPath }),
      virtioFs: fc.record({
        daemon: absPath,
        cache: fc.constant('never'),
        extraArgs: fc.constant([]),
        queueSize: fc.constant(1024),
      }),
      network,
    },
    { requiredKeys: ['sandboxId', 'vcpus', 'memoryMiB', 'kernel', 'initrd', 'kernelParams', 'machineType', 'accel'] },
  )
  .map((b) => ({ sharedDir: '/s', msize9p: 8192, runDir: '/r', ...b }));

const HV_OPS: Record<string, { parse: (r: Req) => unknown; valid: fc.Arbitrary<unknown> }> = {
  boot: { parse: v.parseBoot, valid: boot },
  startProcess: {
    parse: v.parseProcess,
    valid: fc.record(
      {
        ...ref,
        ...plan,
        stdin: fc.boolean(),
        mounts: fc.array(guestMount, { maxLength: 2 }),
        limits: fc.array(limit, { maxLength: 2 }),
        hostname: id,
        rootReadonly: fc.boolean(),
        consoleSize: size,
      },
      { requiredKeys: ['sandboxId', 'containerId', 'args', 'env', 'uid', 'gid', 'additionalGids'] },
    ),
  },
  exec: {
    parse: v.parseExec,
    valid: fc.record(
      { ...ref, execId: id, ...plan, stdin: fc.boolean(), consoleSize: size },
      { requiredKeys: ['sandboxId', 'containerId', 'execId', 'args', 'env', 'uid', 'gid', 'additionalGids'] },
    ),
  },
  closeStdin: {
    parse: (r) => v.parseRef('closeStdin', r),
    valid: fc.record({ ...ref, execId: id }, { requiredKeys: ['sandboxId', 'containerId'] }),
  },
  resize: { parse: v.parseResize, valid: fc.record({ ...ref, rows: fc.nat(500), cols: fc.nat(500) }) },
  pause: { parse: (r) => v.parseFreeze('pause', r), valid: fc.record(ref, { requiredKeys: ['sandboxId'] }) },
  update: { parse: v.parseUpdate, valid: fc.record({ ...ref, limits: fc.array(limit, { maxLength: 3 }) }) },
  stats: { parse: v.parseStats, valid: fc.record(ref) },
  stdin: {
    parse: v.parseStdinChunk,
    valid: fc.record(
      { seq: fc.nat(), data: fc.uint8Array({ maxLength: 16 }), eof: fc.boolean() },
      { requiredKeys: ['seq'] },
    ),
  },
  stop: { parse: v.parseStop, valid: fc.record({ sandboxId: id }) },
  signal: {
    parse: v.parseSignal,
    valid: fc.record(
      { ...ref, execId: id, signal: fc.integer({ min: 1, max: 64 }), all: fc.boolean() },
      { requiredKeys: ['sandboxId', 'containerId', 'signal'] },
    ),
  },
  createUser: { parse: v.parseCreateUser, valid: fc.record({ sandboxId: id }) },
  removeUser: {
    parse: v.parseRemoveUser,
    valid: fc.oneof(fc.record({ user: id, uid: u32 }), fc.record({ sandboxId: id })),
  },
};
const HV_KEYS = [
  'sandboxId',
  'containerId',
  'execId',
  'args',
  'env',
  'cwd',
  'uid',
  'gid',
  'user',
  'accel',
  'network',
  'limits',
  'file',
  'seq',
  'data',
  'signal',
];

describe.each(Object.keys(HV_OPS))('hypervisor worker %s', (op) => {
  const { parse, valid } = HV_OPS[op]!;
  const prefix = op === 'pause' ? 'pause' : op;
  test.prop([wireMap(HV_KEYS)], { numRuns: RUNS })(
    'any decoded map: arguments, or InvalidArgument naming the op',
    (req) => {
      verdict(() => parse(req), { names: [`${prefix}:`, 'boot:'] });
    },
  );
  test.prop([broken(valid.map(throughCodec))], { numRuns: RUNS })(
    'a valid request with one field broken: arguments, or InvalidArgument naming that field',
    ({ value, names }) => {
      const r = verdict(() => parse(value as Req), { names });
      if (!r.ok) expect(r.error.message).toMatch(new RegExp(`^(${prefix}|boot): `));
    },
  );
});

describe('regressions', () => {
  const BOOT = {
    sandboxId: 's',
    vcpus: 1,
    memoryMiB: 256,
    kernel: '/k',
    initrd: '/i',
    kernelParams: '',
    machineType: 'q35',
    accel: 'kvm',
    sharedDir: '/s',
    msize9p: 8192,
    runDir: '/r',
  };
  const BIG = 2n ** 64n - 1n; // a MessagePack uint64
  const refused = (run: () => unknown) =>
    expect(run).toThrowError(expect.objectContaining({ code: 'InvalidArgument' }));
  test('regression: boot with accel sent as a uint64 is InvalidArgument, not a TypeError', () => {
    refused(() => v.parseBoot(throughCodec({ ...BOOT, accel: BIG }) as Req));
  });
  test("regression: boot with a nic's tap.kind sent as a uint64 is InvalidArgument, not a TypeError", () => {
    const nic = { name: 'eth0', mac: '02:00:00:00:00:01', mtu: 1500, addrs: [], tap: { name: 't0', kind: BIG } };
    refused(() => v.parseBoot(throughCodec({ ...BOOT, network: { netns: '/n', nics: [nic], routes: [] } }) as Req));
  });
  test('regression: update with a limit file sent as a uint64 is InvalidArgument, not a TypeError', () => {
    const req = { sandboxId: 's', containerId: 'c', limits: [{ file: BIG, value: 'max' }] };
    refused(() => v.parseUpdate(throughCodec(req) as Req));
  });
});
