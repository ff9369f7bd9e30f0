/** linux.resources and containerd Update → cgroup v2 writes, as runc converts them (src/kata/resources.ts). */
import { describe, expect, it } from 'vitest';
import { cgroupLimits, cpuSharesToWeight, updateLimits } from '../../../src/kata/resources.ts';
import { parseSpec } from '../../../src/kata/oci.ts';
import { expectError } from './expect-error.ts';

const MiB = 1 << 20;

describe('cpuSharesToWeight (runc ConvertCPUSharesToCgroupV2Value)', () => {
  it.each([
    [0, 0], // unset
    [1, 1],
    [2, 1],
    [3, 2],
    [512, 59],
    [1024, 100], // v1's default → v2's default
    [2048, 174],
    [10000, 627],
    [262143, 10000],
    [262144, 10000],
    [1_000_000, 10000],
  ])('%i → %i', (shares, weight) => expect(cpuSharesToWeight(shares)).toBe(weight));

  it('is monotonic and within 1..10000', () => {
    let prev = 1;
    for (let s = 2; s <= 262144; s += 97) {
      const w = cpuSharesToWeight(s);
      expect(w).toBeGreaterThanOrEqual(prev);
      expect(w).toBeLessThanOrEqual(10000);
      prev = w;
    }
  });
});

describe('cgroupLimits', () => {
  it.each<[string, Parameters<typeof cgroupLimits>[0], [string, string][]]>([
    ['nothing', {}, []],
    ['memory limit', { memory: { limit: 64 * MiB } }, [['memory.max', String(64 * MiB)]]],
    [
      'memory -1 is max, and swap with it',
      { memory: { limit: -1 } },
      [
        ['memory.swap.max', 'max'],
        ['memory.max', 'max'],
      ],
    ],
    [
      'swap is memory+swap in OCI, swap alone in v2',
      { memory: { limit: 64 * MiB, swap: 96 * MiB } },
      [
        ['memory.swap.max', String(32 * MiB)],
        ['memory.max', String(64 * MiB)],
      ],
    ],
    [
      'swap equal to memory: no swap',
      { memory: { limit: 64 * MiB, swap: 64 * MiB } },
      [
        ['memory.swap.max', '0'],
        ['memory.max', String(64 * MiB)],
      ],
    ],
    [
      'swap -1: unlimited swap',
      { memory: { limit: 64 * MiB, swap: -1 } },
      [
        ['memory.swap.max', 'max'],
        ['memory.max', String(64 * MiB)],
      ],
    ],
    ['quota and period', { cpu: { quota: 50000, period: 100000 } }, [['cpu.max', '50000 100000']]],
    ['quota -1: max with the period', { cpu: { quota: -1, period: 100000 } }, [['cpu.max', 'max 100000']]],
    ['period only', { cpu: { period: 200000 } }, [['cpu.max', 'max 200000']]],
    ['quota only keeps the period', { cpu: { quota: 20000 } }, [['cpu.max', '20000']]],
    ['shares → weight', { cpu: { shares: 1024 } }, [['cpu.weight', '100']]],
    ['cpus', { cpu: { cpus: '0-1, 3' } }, [['cpuset.cpus', '0-1,3']]],
    ['pids', { pids: { limit: 100 } }, [['pids.max', '100']]],
    ['pids 0 is unlimited', { pids: { limit: 0 } }, [['pids.max', 'max']]],
    ['pids -1 is unlimited', { pids: { limit: -1 } }, [['pids.max', 'max']]],
    [
      "all of them, in runc's order",
      {
        memory: { limit: 128 * MiB },
        cpu: { shares: 2, quota: 100000, period: 100000, cpus: '0' },
        pids: { limit: 64 },
      },
      [
        ['memory.max', String(128 * MiB)],
        ['cpu.weight', '1'],
        ['cpu.max', '100000 100000'],
        ['cpuset.cpus', '0'],
        ['pids.max', '64'],
      ],
    ],
  ])('%s', (_, r, want) => {
    expect(cgroupLimits(r)).toEqual(want.map(([file, value]) => ({ file, value })));
  });

  it.each<[Parameters<typeof cgroupLimits>[0], RegExp]>([
    [{ memory: { limit: -2 } }, /linux\.resources\.memory\.limit must be -1 \(unlimited\), 0 \(unset\) or positive/],
    [{ memory: { swap: 10 * MiB } }, /memory\.swap: unable to set a swap limit without a memory limit/],
    [{ memory: { limit: 64 * MiB, swap: MiB } }, /memory\.swap \(1048576\) must be >= linux\.resources\.memory\.limit/],
    [{ cpu: { quota: -5 } }, /cpu\.quota must be -1/],
    [{ cpu: { quota: 500 } }, /cpu\.quota must be at least 1000/],
    [{ cpu: { period: 999 } }, /cpu\.period must be 1000\.\.1000000/],
    [{ cpu: { period: 2_000_000 } }, /cpu\.period must be 1000\.\.1000000/],
    [{ cpu: { cpus: 'all' } }, /cpu\.cpus must be a CPU list/],
  ])('refuses %j', async (r, msg) => {
    await expectError(() => cgroupLimits(r), 'InvalidArgument', msg);
  });

  it('reads what parseSpec parsed (memory.reservation and cpu.mems are not converted)', () => {
    const spec = parseSpec(
      JSON.stringify({
        process: { args: ['sh'] },
        root: { path: 'rootfs' },
        hostname: 'box',
        linux: {
          resources: {
            memory: { limit: 64 * MiB, reservation: 32 * MiB, swap: 64 * MiB },
            cpu: { quota: 50000, period: 100000, cpus: '0', mems: '0' },
            pids: { limit: 10 },
          },
        },
      }),
    );
    expect(spec.hostname).toBe('box');
    expect(spec.linux.resources.pids).toEqual({ limit: 10 });
    expect(cgroupLimits(spec.linux.resources).map((l) => l.file)).toEqual([
      'memory.swap.max',
      'memory.max',
      'cpu.max',
      'cpuset.cpus',
      'pids.max',
    ]);
  });

  it('parseSpec refuses wrong types in the new fields, naming them', async () => {
    const bad = (resources: unknown) =>
      parseSpec(JSON.stringify({ process: { args: ['sh'] }, root: { path: 'r' }, linux: { resources } }));
    await expectError(() => bad({ pids: { limit: '5' } }), 'InvalidArgument', /linux\.resources\.pids\.limit must be/);
    await expectError(
      () => bad({ cpu: { cpus: 3 } }),
      'InvalidArgument',
      /linux\.resources\.cpu\.cpus must be a string/,
    );
    await expectError(() => bad({ memory: { swap: 1.5 } }), 'InvalidArgument', /memory\.swap must be an integer/);
    await expectError(() => bad({ pids: [] }), 'InvalidArgument', /linux\.resources\.pids must be an object/);
  });
});

describe('updateLimits (containerd Update)', () => {
  it('converts the wire shape', () => {
    expect(
      updateLimits({ memory: { limit: 32 * MiB }, cpu: { quota: 10000, period: 100000 }, pids: { limit: 20 } }),
    ).toEqual([
      { file: 'memory.max', value: String(32 * MiB) },
      { file: 'cpu.max', value: '10000 100000' },
      { file: 'pids.max', value: '20' },
    ]);
    expect(updateLimits({ pids: { limit: 7 }, blockIO: { weight: 5 } })).toEqual([{ file: 'pids.max', value: '7' }]);
    expect(updateLimits({})).toEqual([]);
  });

  it.each<[unknown, RegExp]>([
    [null, /update: resources must be a map/],
    [{ memory: 5 }, /update: resources\.memory must be a map/],
    [{ memory: { limit: -3 } }, /update: resources\.memory\.limit must be an integer >= -1, got -3/],
    [{ cpu: { shares: -1 } }, /update: resources\.cpu\.shares must be an integer >= 0/],
    [{ cpu: { period: -1 } }, /resources\.cpu\.period must be an integer >= 0/],
    [{ cpu: { quota: 1.5 } }, /resources\.cpu\.quota must be an integer/],
    [{ cpu: { cpus: 1 } }, /resources\.cpu\.cpus must be a string/],
    [{ pids: { limit: -2 } }, /resources\.pids\.limit must be an integer >= -1/],
    [{ pids: { limit: '9' } }, /resources\.pids\.limit must be an integer/],
    [{ cpu: { quota: 10 } }, /update: resources\.cpu\.quota must be at least 1000/],
    [{ memory: { swap: MiB } }, /update: resources\.memory\.swap: unable to set a swap limit without a memory limit/],
  ])('refuses %j', async (r, msg) => {
    await expectError(() => updateLimits(r), 'InvalidArgument', msg);
  });
});
