import { describe, expect, it } from 'vitest';
import {
  applyStaticSizing,
  calculateContainerSizing,
  calculateSandboxSizing,
  calculateVmResources,
  SANDBOX_CPU_PERIOD,
  SANDBOX_CPU_QUOTA,
  SANDBOX_MEMORY,
} from '../../../src/kata/sizing.ts';

const annotations = (memory?: string, quota?: string, period?: string) => ({
  annotations: Object.fromEntries(
    [
      [SANDBOX_MEMORY, memory],
      [SANDBOX_CPU_QUOTA, quota],
      [SANDBOX_CPU_PERIOD, period],
    ].filter(([, v]) => v !== undefined),
  ) as Record<string, string>,
});

describe('calculateSandboxSizing: the worked examples of §4.4 (memory, quota, period)', () => {
  it.each([
    ['1048576', '200', '100', 2, 1],
    ['1024', '200', '1', 200, 0],
    ['foobar', '200', 'spaghetti', 0, 0],
    ['-1048576', '-100', '1', 0, 0],
    ['-1', '100', '1', 100, 0],
    ['4294967296', '400', '100', 4, 4096],
    ['536870912', '150000', '100000', 2, 512],
  ])('(%s, %s, %s) → %i vCPUs, %i MiB', (m, q, p, vcpus, memMiB) => {
    expect(calculateSandboxSizing(annotations(m, q, p))).toEqual({ vcpus, memMiB });
  });

  it('with static management and 1 vCPU / 2048 MiB defaults, the [C] row boots at 3 vCPU / 2560 MiB', () => {
    const workload = calculateSandboxSizing(annotations('536870912', '150000', '100000'));
    expect(applyStaticSizing({ vcpus: 1, memMiB: 2048 }, workload)).toEqual({
      vcpus: 3,
      memMiB: 2560,
      baseVcpus: 1,
      baseMemMiB: 2048,
    });
  });
});

describe('calculateSandboxSizing: rules (§4.1)', () => {
  it.each([undefined, {}, { annotations: undefined }])('no spec or no annotations (%j) → 0/0', (s) => {
    expect(calculateSandboxSizing(s)).toEqual({ vcpus: 0, memMiB: 0 });
  });
  it('missing keys mean 0', () => {
    expect(calculateSandboxSizing(annotations('2097152'))).toEqual({ vcpus: 0, memMiB: 2 });
    expect(calculateSandboxSizing(annotations(undefined, '100', '100'))).toEqual({ vcpus: 1, memMiB: 0 });
  });
  it('period is unsigned: a signed period is unparsable → 0 → 0 vCPUs', () => {
    expect(calculateSandboxSizing(annotations(undefined, '100', '+100'))).toEqual({ vcpus: 0, memMiB: 0 });
  });
  it('quota and memory accept a leading "+" (ParseInt)', () => {
    expect(calculateSandboxSizing(annotations('+1048576', '+100', '100'))).toEqual({ vcpus: 1, memMiB: 1 });
  });
  it('an out-of-range quota is unparsable → 0', () => {
    expect(calculateSandboxSizing(annotations(undefined, '9223372036854775808', '1'))).toEqual({ vcpus: 0, memMiB: 0 });
  });
});

describe('calculateVmResources: the 3.2.0 integer formula (§4.3)', () => {
  it.each([
    [100000n, 50n, 0n, 0, 'floor to milli-CPU before the ceiling: 50/100000 → 0'],
    [100000n, 100n, 0n, 1, '1 milli-CPU rounds up to 1'],
    [100000n, 150000n, 0n, 2, '1.5 → 2'],
    [100000n, 100000n, 0n, 1, 'exactly 1'],
    [0n, 100n, 0n, 0, 'period 0 → 0'],
    [100n, -1n, 0n, 0, 'negative quota (unlimited) → 0'],
    [1n, 4294966n, 0n, 4294966, 'largest milli-CPU that survives the +999'],
    [1n, 4294967n, 0n, 0, 'uint32 milli + 999 overflows → 0'],
    [1n, 4294968n, 0n, 1, 'uint32(milli) truncation: 4294968000 → 704 → 1'],
    [1000n, 4294967295n, 0n, 0, 'milli = 2^32-1: uint32 milli + 999 wraps → 0'],
    [1n, 18446744073709552n, 0n, 1, 'uint64(quota)*1000 wraps modulo 2^64 (→ 384 milli-CPU)'],
    [18446744073709551615n, 1n, 0n, 0, 'max uint64 period'],
  ])('period %s, quota %s → %i vCPUs (%s)', (period, quota, mem, vcpus) => {
    expect(calculateVmResources(period, quota, mem).vcpus).toBe(vcpus);
  });

  it.each([
    [1048575n, 0, 'below 1 MiB floors to 0'],
    [1048576n * 3n + 5n, 3, 'floor'],
    [-5n, 0, 'negative → 0'],
    [4294967296n * 1048576n, 0, '2^32 MiB wraps uint32 to 0'],
    [(4294967296n + 7n) * 1048576n, 7, 'uint32 truncation keeps the low bits'],
  ])('memory %s → %i MiB (%s)', (mem, mib) => {
    expect(calculateVmResources(0n, 0n, mem).memMiB).toBe(mib);
  });
});

describe('calculateContainerSizing (§4.2)', () => {
  it.each([
    [undefined, 0, 0],
    [{}, 0, 0],
    [{ linux: {} }, 0, 0],
    [{ linux: { resources: {} } }, 0, 0],
    [{ linux: { resources: { cpu: { quota: 200000, period: 100000 } } } }, 2, 0],
    [{ linux: { resources: { cpu: { quota: 200000 } } } }, 0, 0],
    [{ linux: { resources: { cpu: { period: 100000 } } } }, 0, 0],
    [{ linux: { resources: { cpu: {} } } }, 0, 0],
    [{ linux: { resources: { memory: { limit: 536870912 } } } }, 0, 512],
    [{ linux: { resources: { memory: {} } } }, 0, 0],
    [{ linux: { resources: { cpu: { quota: 150000, period: 100000 }, memory: { limit: 536870912 } } } }, 2, 512],
    [{ linux: { resources: { cpu: { quota: -1, period: 100000 }, memory: { limit: -1 } } } }, 0, 0],
  ])('%j → %i vCPUs, %i MiB', (spec, vcpus, memMiB) => {
    expect(calculateContainerSizing(spec)).toEqual({ vcpus, memMiB });
  });
});

describe('applyStaticSizing', () => {
  it('adds the workload to the base and records the base', () => {
    expect(applyStaticSizing({ vcpus: 2, memMiB: 4096 }, { vcpus: 0, memMiB: 0 })).toEqual({
      vcpus: 2,
      memMiB: 4096,
      baseVcpus: 2,
      baseMemMiB: 4096,
    });
  });
  it('sums wrap as uint32, as Go', () => {
    expect(applyStaticSizing({ vcpus: 1, memMiB: 2048 }, { vcpus: 0xffff_ffff, memMiB: 0xffff_ffff })).toMatchObject({
      vcpus: 0,
      memMiB: 2047,
    });
  });
});
