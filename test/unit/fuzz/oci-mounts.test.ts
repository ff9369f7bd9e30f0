/**
 * config.json `mounts` (src/kata/oci-mounts.ts) on any list of mount entries: `hostBindIndexes` and
 * `planMounts` answer a plan or InvalidArgument naming the mount, never another error, and a plan is well
 * formed: guest targets absolute and normalized, u32 flags, host steps inside the container's share
 * with printable names, one host bind per host-bind index; more than 256 mounts are refused.
 */
import { describe, expect, vi } from 'vitest';
import { hostBindIndexes, MAX_MOUNTS, planMounts } from '../../../src/kata/oci-mounts.ts';
import type { OciMount } from '../../../src/kata/oci-types.ts';
import { ociMount } from './oci-specs.ts';
import { fc, test } from './prop.ts';
import { RUNS, TIMEOUT_MS } from './runs.ts';
import { verdict } from './verdict.ts';
import { TRICKY_STRINGS, wireString } from './wire.ts';

vi.setConfig({ testTimeout: TIMEOUT_MS });

const option = fc.oneof(
  fc.constantFrom(...'ro rw rbind bind nosuid nodev noexec remount rprivate idmap tmpcopyup defaults'.split(' ')),
  fc.constantFrom('size=65536k', 'mode=1777', 'uid=0', 'newinstance', ...TRICKY_STRINGS),
  fc.string({ maxLength: 8 }),
);
const mount: fc.Arbitrary<OciMount> = fc.oneof(
  ociMount,
  fc.record({
    destination: fc.oneof(wireString, fc.constantFrom('/', '/a/../b', '/a//b/', '/dev/shm', '/dev', '/x\0y', 'rel/x')),
    type: fc.oneof(wireString, fc.constantFrom('bind', 'tmpfs', 'proc', 'devpts', 'ephemeral', 'local', 'ext4')),
    source: fc.oneof(wireString, fc.constantFrom('/dev/null', '/host/x', '/p/kubernetes.io~empty-dir/v')),
    options: fc.array(option, { maxLength: 5 }),
  }),
);

const HOST_DIR = '/run/corral/shared-host/c1';
const GUEST_DIR = '/run/corral/shared/c1';

describe('config.json mounts', () => {
  test.prop([fc.array(mount, { maxLength: 6 })], { numRuns: RUNS })(
    'a well-formed plan, or InvalidArgument naming the mount',
    (mounts) => {
      const idx = verdict(() => hostBindIndexes(mounts), { names: ['config.json mounts['] });
      if (!idx.ok) return;
      const sources = new Map(idx.value.map((i) => [i, { path: `/bundles/src-${i}`, file: i % 2 === 0 }]));
      const plan = planMounts(mounts, { hostDir: HOST_DIR, guestDir: GUEST_DIR, sources });
      expect(plan.host.filter((s) => s.kind === 'bind')).toHaveLength(idx.value.length);
      for (const g of plan.guest) {
        expect(g.target).toMatch(/^\/./);
        expect(g.target.split('/')).not.toContain('..');
        expect(g.target).not.toMatch(/\/\/|\/$|\0/);
        expect(g.flags >>> 0).toBe(g.flags);
      }
      for (const h of plan.host)
        expect(h.kind === 'bind' ? h.target : h.path).toMatch(/^\/run\/corral\/shared-host\/c1\/mounts\/\d+-[\w.-]+$/);
    },
  );

  test.prop([fc.integer({ min: MAX_MOUNTS - 2, max: MAX_MOUNTS + 3 })], { numRuns: Math.min(RUNS, 30) })(
    `at most ${MAX_MOUNTS} mounts`,
    (n) => {
      const m = { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: [] };
      const r = verdict(() => hostBindIndexes(Array.from({ length: n }, () => m)), { names: ['mounts'] });
      expect(r.ok).toBe(n <= MAX_MOUNTS);
    },
  );
});
