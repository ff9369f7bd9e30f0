import { describe, expect, it } from 'vitest';
import {
  isEmptyDirSource,
  isTmpfsIn,
  isTmpfsMountPoint,
  setEphemeralStorageType,
} from '../../../src/kata/empty-dir.ts';
import type { OciMount } from '../../../src/kata/oci.ts';

const ED = '/var/lib/kubelet/pods/uid/volumes/kubernetes.io~empty-dir';
const m = (source: string, type = 'bind'): OciMount => ({ destination: '/d', type, source, options: ['rbind'] });
const tmpfsAt =
  (...paths: string[]) =>
  async (p: string) =>
    paths.includes(p);

describe('isEmptyDirSource', () => {
  it.each([
    [`${ED}/cache`, true],
    ['kubernetes.io~empty-dir/x', true],
    [`${ED}/cache/`, false],
    [`${ED}`, false],
    ['/var/lib/kubelet/pods/uid/volumes/kubernetes.io~secret/s', false],
    ['/x/kubernetes.io~empty-dir-ish/v', false],
    ['', false],
  ])('%j → %s (second-to-last component)', (s, yes) => expect(isEmptyDirSource(s)).toBe(yes));
});

describe('setEphemeralStorageType (§1.6 step 1)', () => {
  it('an emptyDir on tmpfs becomes "ephemeral" (flag off)', async () => {
    const [out] = await setEphemeralStorageType([m(`${ED}/mem`)], false, tmpfsAt(`${ED}/mem`));
    expect(out?.type).toBe('ephemeral');
  });
  it('an emptyDir on tmpfs becomes "ephemeral" regardless of disable_guest_empty_dir', async () => {
    const [out] = await setEphemeralStorageType([m(`${ED}/mem`)], true, tmpfsAt(`${ED}/mem`));
    expect(out?.type).toBe('ephemeral');
  });
  it('any other emptyDir becomes "local" when disable_guest_empty_dir = false', async () => {
    const [out] = await setEphemeralStorageType([m(`${ED}/disk`)], false, tmpfsAt());
    expect(out?.type).toBe('local');
  });
  it('with disable_guest_empty_dir = true, a non-tmpfs emptyDir stays a host bind mount', async () => {
    const [out] = await setEphemeralStorageType([m(`${ED}/disk`)], true, tmpfsAt());
    expect(out?.type).toBe('bind');
  });
  it('other mounts are untouched and the tmpfs check is not asked about them', async () => {
    const asked: string[] = [];
    const other = m('/host/data');
    const out = await setEphemeralStorageType([other], false, async (p) => (asked.push(p), true));
    expect(out[0]).toBe(other);
    expect(asked).toEqual([]);
  });
  it('does not modify its input and keeps order', async () => {
    const input = [m(`${ED}/a`), m('/x'), m(`${ED}/b`)];
    const out = await setEphemeralStorageType(input, false, tmpfsAt(`${ED}/b`));
    expect(out.map((x) => x.type)).toEqual(['local', 'bind', 'ephemeral']);
    expect(input.map((x) => x.type)).toEqual(['bind', 'bind', 'bind']);
  });
});

describe('tmpfs mount-point detection', () => {
  const mounts = [
    'proc /proc proc rw 0 0',
    `tmpfs ${ED}/mem tmpfs rw 0 0`,
    'tmpfs /with\\040space tmpfs rw 0 0',
    '/dev/sda1 /stacked ext4 rw 0 0',
    'tmpfs /stacked tmpfs rw 0 0',
    'tmpfs /covered tmpfs rw 0 0',
    '/dev/sda1 /covered ext4 rw 0 0',
  ].join('\n');
  it.each([
    [`${ED}/mem`, true],
    [`${ED}/mem/sub`, false],
    [`${ED}`, false],
    ['/with space', true],
    ['/stacked', true],
    ['/covered', false],
    ['/proc', false],
  ])('%j → %s (exact match, escapes decoded, last entry wins)', (p, yes) => expect(isTmpfsIn(mounts, p)).toBe(yes));

  it('the real check reads /proc/mounts', async () => {
    expect(await isTmpfsMountPoint('/nonexistent/kubernetes.io~empty-dir/x')).toBe(false);
  });
});
