/**
 * Mount specs (src/kata/mount-options.ts) and the create request's rootfs entries (src/kata/rootfs.ts),
 * on any input. `parseMountOptions` follows runc's table: every option outside it is kept as filesystem
 * data, verbatim and in order; flags are MS_* bits only; the last of ro/rw wins. `decideRootfs` is
 * Kata's `checkAndMount` (none for no entry; block or nydus only for a single entry; otherwise mount
 * every entry, in order) and never throws; `isBlockDevice` answers a boolean for any path.
 */
import { describe, expect, vi } from 'vitest';
import { MS, parseMountOptions } from '../../../src/kata/mount-options.ts';
import { decideRootfs, isBlockDevice, NYDUS_ROOTFS_TYPE, type RootfsEntry } from '../../../src/kata/rootfs.ts';
import { fc, test } from './prop.ts';
import { RUNS, TIMEOUT_MS } from './runs.ts';
import { TRICKY_STRINGS, wireString } from './wire.ts';

vi.setConfig({ testTimeout: TIMEOUT_MS });

/** runc's option names (libcontainer/specconv `parseMountOptions`), and the ones Corral drops or refuses. */
const FLAGS =
  'acl async atime bind defaults dev diratime dirsync exec iversion lazytime loud mand noacl noatime nodev ' +
  'nodiratime noexec noiversion nolazytime nomand norelatime nostrictatime nosuid nosymfollow rbind relatime ' +
  'remount ro rw silent strictatime suid sync';
const PROPAGATION = 'private rprivate shared rshared slave rslave unbindable runbindable';
const RECURSIVE =
  'rro rrw rnosuid rsuid rnodev rdev rnoexec rexec rnodiratime rdiratime rrelatime rnorelatime rnoatime ratime ' +
  'rstrictatime rnostrictatime rnosymfollow rsymfollow';
const NOT_DATA = new Set([...`${FLAGS} ${PROPAGATION} ${RECURSIVE} idmap ridmap tmpcopyup symfollow`.split(' '), '']);
const ALL_BITS = Object.values(MS).reduce((a, b) => a | b, 0);

const option = fc.oneof(
  fc.constantFrom(...NOT_DATA),
  fc.constantFrom('size=65536k', 'mode=1777', 'uid=0', 'newinstance', 'lowerdir=/a', ...TRICKY_STRINGS),
  fc.string({ maxLength: 8 }),
);

describe('parseMountOptions', () => {
  test.prop([fc.array(option, { maxLength: 8 })], { numRuns: RUNS })(
    "keeps every option outside runc's table as data, verbatim and in order",
    (opts) => {
      const p = parseMountOptions(opts);
      expect(p.data).toBe(opts.filter((o) => !NOT_DATA.has(o)).join(','));
      expect(p.flags & ~ALL_BITS).toBe(0);
      expect(p.idmapped).toBe(opts.some((o) => o === 'idmap' || o === 'ridmap'));
    },
  );

  test.prop([fc.array(option, { maxLength: 8 }), fc.constantFrom('ro', 'rw', 'rro', 'rrw')], { numRuns: RUNS })(
    'the last of ro and rw wins',
    (opts, last) => {
      const ro = (parseMountOptions([...opts, last]).flags & MS.RDONLY) !== 0;
      expect(ro).toBe(last === 'ro' || last === 'rro');
    },
  );

  test('regression: an option named like an Object.prototype member (toString) is data, verbatim', () => {
    expect(parseMountOptions(['toString', 'constructor', '__proto__']).data).toBe('toString,constructor,__proto__');
  });
});

const entry: fc.Arbitrary<RootfsEntry> = fc.record({
  type: fc.oneof(fc.constantFrom('overlay', 'ext4', NYDUS_ROOTFS_TYPE, ''), wireString),
  source: fc.oneof(fc.constantFrom('/dev/vda', '/dev/null', ''), wireString),
  options: fc.array(wireString, { maxLength: 3 }),
});

describe('rootfs entries', () => {
  test.prop([fc.array(entry, { maxLength: 4 }), fc.boolean(), fc.func(fc.boolean())], { numRuns: RUNS })(
    "decideRootfs is Kata's checkAndMount",
    async (rootfs, disableBlockDeviceUse, isBlock) => {
      const asked: string[] = [];
      const d = await decideRootfs(rootfs, {
        disableBlockDeviceUse,
        isBlockDevice: async (p) => (asked.push(p), isBlock(p)),
      });
      const [only] = rootfs;
      if (!only) expect(d).toEqual({ action: 'none', mounts: [] });
      else if (rootfs.length > 1) expect(d).toEqual({ action: 'mount', mounts: rootfs });
      else if (!disableBlockDeviceUse && isBlock(only.source)) expect(d).toEqual({ action: 'block', mounts: [only] });
      else expect(d).toEqual({ action: only.type === NYDUS_ROOTFS_TYPE ? 'nydus' : 'mount', mounts: [only] });
      expect(asked.length).toBeLessThanOrEqual(rootfs.length === 1 ? 1 : 0);
    },
  );

  const path = fc.oneof(wireString, fc.constantFrom('/dev/null', '/dev', '/proc/self/fd/0', `/${'x'.repeat(5000)}`));
  test.prop([path], { numRuns: RUNS })('isBlockDevice answers a boolean for any path, without throwing', async (p) => {
    expect(typeof (await isBlockDevice(p))).toBe('boolean');
  });
});
