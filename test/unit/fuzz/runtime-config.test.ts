/**
 * The Kata runtime configuration and the annotations that override it. TOML (src/kata/config-decode.ts,
 * config-files.ts, config-load.ts) of any text, as the main file or a config.d drop-in, and a valid file
 * with one key set to a value of any TOML type: loading answers a configuration or InvalidArgument /
 * NotFound, never another error, and a value of the wrong type or out of its Go range is refused naming
 * `<table>.<key>`. Annotations (config-annotations.ts, container-type.ts, sizing.ts) of any map:
 * `applyAnnotations` answers a configuration within the host's limits or InvalidArgument; with
 * `enable_annotations = []` a hypervisor key is refused naming it; the container type is Kata's or
 * InvalidArgument; sandbox sizing never throws and stays in uint32.
 */
import { beforeAll, describe, expect, vi } from 'vitest';
import { applyAnnotations, HYPERVISOR_PREFIX } from '../../../src/kata/config-annotations.ts';
import { parseToml } from '../../../src/kata/config-decode.ts';
import {
  AGENT_KEYS,
  FACTORY_KEYS,
  HYPERVISOR_KEYS,
  type Kind,
  RUNTIME_KEYS,
  type RuntimeConfig,
} from '../../../src/kata/config-types.ts';
import { containerType, sandboxIdOf } from '../../../src/kata/container-type.ts';
import { calculateSandboxSizing } from '../../../src/kata/sizing.ts';
import { ASSETS, CONF, host, IMAGE, load, qemuToml } from '../kata/config-fixture.ts';
import { memFs } from '../kata/mem-fs.ts';
import { fc, test } from './prop.ts';
import { RUNS, TIMEOUT_MS } from './runs.ts';
import { settle, verdict } from './verdict.ts';
import { wireString } from './wire.ts';

vi.setConfig({ testTimeout: TIMEOUT_MS });

const codes = { codes: ['InvalidArgument', 'NotFound'] as const };

/** A TOML value literal and what it holds, so that a test knows whether a key's kind accepts it. */
type Lit = { text: string } & ({ t: 'int'; n: bigint } | { t: 'string' | 'float' | 'bool' | 'strings' | 'other' });
const lit: fc.Arbitrary<Lit> = fc.oneof(
  fc.string({ maxLength: 10 }).map((s) => ({ t: 'string' as const, text: JSON.stringify(s) })),
  fc
    .constantFrom('/usr/bin/qemu-system-x86_64', 'virtio-blk', 'bogus', '')
    .map((s) => ({ t: 'string' as const, text: JSON.stringify(s) })),
  fc
    .oneof(
      fc.bigInt({ min: -(2n ** 65n), max: 2n ** 65n }),
      fc.constantFrom(0n, -1n, 2n ** 31n, 2n ** 32n, 2n ** 53n, 2n ** 63n - 1n),
    )
    .map((n) => ({ t: 'int' as const, n, text: String(n) })),
  fc
    .double({ noNaN: true, noDefaultInfinity: true })
    .filter((d) => !Number.isInteger(d))
    .map((d) => ({ t: 'float' as const, text: String(d) })),
  fc.boolean().map((b) => ({ t: 'bool' as const, text: String(b) })),
  fc
    .array(fc.stringMatching(/^[a-z.*/]{0,6}$/), { maxLength: 3 })
    .map((a) => ({ t: 'strings' as const, text: JSON.stringify(a) })),
  fc
    .constantFrom('[1, "a"]', '{ a = 1 }', '1979-05-27T07:32:00Z', 'nan', 'inf', '[[1]]')
    .map((text) => ({ t: 'other' as const, text })),
);

const RANGE: Partial<Record<Kind, [bigint, bigint]>> = {
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  uint32: [0n, 2n ** 32n - 1n],
  uint64: [0n, 2n ** 53n - 1n],
  int64: [-(2n ** 53n - 1n), 2n ** 53n - 1n],
};
function fits(kind: Kind, v: Lit): boolean {
  const range = RANGE[kind];
  if (range) return v.t === 'int' && v.n >= range[0] && v.n <= range[1];
  return kind === 'bool' ? v.t === 'bool' : kind === 'string' ? v.t === 'string' : v.t === 'strings';
}

/** Keys the fixture's [hypervisor.qemu] sets itself (a second definition is a TOML error, not a type error). */
const FIXED = ['path', 'kernel', 'image', 'virtio_fs_daemon'];
const TABLES = [
  { table: 'hypervisor.qemu', keys: HYPERVISOR_KEYS as Record<string, Kind> },
  { table: 'runtime', keys: RUNTIME_KEYS as Record<string, Kind> },
  { table: 'agent.kata', keys: AGENT_KEYS as Record<string, Kind> },
  { table: 'factory', keys: FACTORY_KEYS as Record<string, Kind> },
];
const oneKey = fc
  .constantFrom(...TABLES)
  .chain(({ table, keys }) =>
    fc.record({
      table: fc.constant(table),
      key: fc.constantFrom(...Object.keys(keys).filter((k) => !FIXED.includes(k))),
      kind: fc.constant(keys),
      v: lit,
    }),
  )
  .map(({ table, key, kind, v }) => ({ table, key, kind: kind[key]!, v }));

const tomlish = fc.oneof(
  fc.string({ maxLength: 60 }),
  fc
    .array(
      fc.oneof(
        fc.constantFrom(
          '[hypervisor.qemu]',
          '[runtime]',
          '[agent.kata]',
          '[[x]]',
          'a.b = 1',
          'k = "v"',
          '[hypervisor.clh]',
        ),
        fc.string({ maxLength: 10 }),
      ),
      { maxLength: 6 },
    )
    .map((l) => l.join('\n')),
);

describe('configuration.toml', () => {
  test.prop([tomlish], { numRuns: RUNS })('parseToml: a table, or InvalidArgument', (t) => {
    verdict(() => parseToml(t));
  });

  test.prop([tomlish], { numRuns: RUNS })(
    'any main file: a configuration, or InvalidArgument / NotFound',
    async (t) => {
      await settle(() => load(t), codes);
    },
  );

  test.prop([tomlish], { numRuns: RUNS })('any drop-in: a configuration, or InvalidArgument / NotFound', async (t) => {
    await settle(() => load(qemuToml(), { [CONF.replace(/[^/]+$/, 'config.d/10-x.toml')]: t }), codes);
  });

  test.prop([oneKey], { numRuns: RUNS })(
    'one key set to any value: refused naming <table>.<key> when its type or range is wrong',
    async ({ table, key, kind, v }) => {
      const line = `${key} = ${v.text}`;
      const toml = table === 'hypervisor.qemu' ? qemuToml(line) : `${qemuToml()}\n[${table}]\n${line}\n`;
      const r = await settle(() => load(toml), codes);
      if (!fits(kind, v)) {
        expect(r.ok, `${table}.${key} = ${v.text} was accepted`).toBe(false);
        if (!r.ok) expect(r.error.message).toContain(`${table}.${key}`);
      }
    },
  );
});

const H = (k: string) => `${HYPERVISOR_PREFIX}${k}`;
const KEYS = [
  ...['default_vcpus', 'default_max_vcpus', 'default_memory', 'block_device_driver', 'shared_fs', 'virtio_fs_daemon']
    .concat(['virtio_fs_extra_args', 'msize_9p', 'path', 'kernel_params', 'machine_type', 'entropy_source', 'kernel'])
    .concat(['image', 'initrd', 'disable_block_device_use', 'enable_iommu', 'rootless', 'no_such_key'])
    .map(H),
  ...['disable_guest_seccomp', 'sandbox_cgroup_only', 'disable_new_netns', 'guest_selinux_label', 'experimental']
    .concat(['internetworking_model', 'vfio_mode'])
    .map((k) => `io.katacontainers.config.runtime.${k}`),
  ...['kernel_modules', 'enable_tracing', 'container_pipe_size'].map((k) => `io.katacontainers.config.agent.${k}`),
  'io.katacontainers.enable_vcpus_pinning',
  'io.kubernetes.cri.container-type',
  'io.kubernetes.cri-o.ContainerType',
  'io.kubernetes.cri.sandbox-id',
  'io.kubernetes.cri.sandbox-cpu-quota',
  'io.kubernetes.cri.sandbox-cpu-period',
  'io.kubernetes.cri.sandbox-memory',
];
const VALUES = [
  ...['0', '1', '4', '8', '9', '255', '256', '4096', '4294967295', '4294967296', '18446744073709551616', '-1', '1.5']
    .concat(['true', 'false', 'T', 'yes', '', 'virtio-blk', 'virtio-fs', 'virtio-9p', 'none', 'tcfilter', 'vfio'])
    .concat(['sandbox', 'container', 'podsandbox', '["--x"]', '[1]', '{', 'quiet =x', 'a;b', '/usr/bin/qemu-alt'])
    .concat(['/dev/hwrng', '/etc/shadow', '/opt/kernels/k2', '/opt/images/i2', '/opt/initrds/r2', IMAGE]),
];
const annotations = fc
  .array(fc.tuple(fc.constantFrom(...KEYS), fc.oneof(fc.constantFrom(...VALUES), wireString)), { maxLength: 6 })
  .map((kv) => Object.fromEntries(kv.map(([k, v]) => [k, String(v)])) as Record<string, string>);

const FILES = {
  '/usr/bin/qemu-alt': 'q',
  '/opt/kernels/k2': 'k',
  '/opt/images/i2': 'i',
  '/opt/initrds/r2': 'r',
  '/usr/libexec/virtiofsd-alt': 'v',
  '/dev/hwrng': 'h',
  '/etc/shadow': 's',
};
const fs = memFs({ ...ASSETS, ...FILES });
const LISTS = `
valid_hypervisor_paths = ["/usr/bin/qemu*"]
valid_kernel_paths = ["/opt/kernels/*"]
valid_image_paths = ["/opt/images/*"]
valid_initrd_paths = ["/opt/initrds/*"]
valid_virtio_fs_daemon_paths = ["/usr/libexec/virtiofsd*"]
valid_entropy_sources = ["/dev/urandom", "/dev/hwrng"]`;
let open: RuntimeConfig;
let closed: RuntimeConfig;
beforeAll(async () => {
  open = await load(qemuToml(`enable_annotations = [".*"]\n${LISTS}`), FILES);
  closed = await load(qemuToml(`enable_annotations = []\n${LISTS}`), FILES);
});

describe('applyAnnotations', () => {
  test.prop([annotations], { numRuns: RUNS })('a configuration within the host, or InvalidArgument', async (a) => {
    const r = await settle(() => applyAnnotations(open, a, { fs, host }));
    if (!r.ok) return;
    const hv = r.value.hypervisor;
    expect(Object.isFrozen(hv)).toBe(true);
    expect(hv.defaultVcpus).toBeLessThanOrEqual(host.cpus);
    expect(hv.defaultMaxvcpus).toBeLessThanOrEqual(host.maxVcpus);
    expect(hv.defaultMemory).toBeGreaterThanOrEqual(256);
    expect(hv.msize9p).toBeGreaterThan(0);
    expect(hv.image === '' || hv.initrd === '').toBe(true);
  });

  test.prop([annotations], { numRuns: RUNS })(
    'enable_annotations = []: any hypervisor key is refused, naming the first',
    async (a) => {
      const gated = Object.keys(a)
        .sort()
        .find((k) => k.startsWith(HYPERVISOR_PREFIX));
      const r = await settle(() => applyAnnotations(closed, a, { fs, host }));
      if (gated) expect(r.ok ? '' : r.error.message).toBe(`annotation ${gated} is not enabled`);
      else if (!r.ok) expect(r.error.message).not.toMatch(/is not enabled/);
    },
  );
});

describe('CRI annotations', () => {
  test.prop([annotations], { numRuns: RUNS })("the container type is Kata's, or InvalidArgument", (a) => {
    const r = verdict(() => containerType(a), { names: ['container type'] });
    if (r.ok && r.value === 'pod_container') verdict(() => sandboxIdOf(a), { names: ['sandbox ID'] });
  });

  test.prop([annotations], { numRuns: RUNS })('sandbox sizing never throws and stays in uint32', (a) => {
    const s = calculateSandboxSizing({ annotations: a });
    for (const n of [s.vcpus, s.memMiB]) expect(n >>> 0).toBe(n);
  });
});
