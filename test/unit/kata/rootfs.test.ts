import { describe, expect, it } from 'vitest';
import { decideRootfs, isBlockDevice, type RootfsEntry } from '../../../src/kata/rootfs.ts';

const overlay: RootfsEntry = {
  type: 'overlay',
  source: 'overlay',
  options: ['lowerdir=/l', 'upperdir=/u', 'workdir=/w'],
};
const blk: RootfsEntry = { type: 'ext4', source: '/dev/dm-3', options: [] };
const nydus: RootfsEntry = { type: 'fuse.nydus-overlayfs', source: 'overlay', options: ['extraoption=abc'] };
const isBlock = async (p: string) => p === '/dev/dm-3';
const opts = (disableBlockDeviceUse = false) => ({ disableBlockDeviceUse, isBlockDevice: isBlock });

describe('decideRootfs (§6.1)', () => {
  it('zero entries → none: nothing mounted, nothing to unmount later (Corral fix)', async () => {
    expect(await decideRootfs([], opts())).toEqual({ action: 'none', mounts: [] });
  });
  it('one block device, block devices allowed → block (hot-plugged, not mounted)', async () => {
    expect(await decideRootfs([blk], opts())).toEqual({ action: 'block', mounts: [blk] });
  });
  it('one block device with disable_block_device_use → mount', async () => {
    expect(await decideRootfs([blk], opts(true))).toEqual({ action: 'mount', mounts: [blk] });
  });
  it('one fuse.nydus-overlayfs entry → nydus', async () => {
    expect(await decideRootfs([nydus], opts())).toEqual({ action: 'nydus', mounts: [nydus] });
  });
  it('nydus is recognised by exact type only (3.2.0)', async () => {
    const other = { ...nydus, type: 'fuse.other-nydus-overlayfs' };
    expect((await decideRootfs([other], opts())).action).toBe('mount');
  });
  it('one ordinary entry → mount', async () => {
    expect(await decideRootfs([overlay], opts())).toEqual({ action: 'mount', mounts: [overlay] });
  });
  it('the block check comes first: a nydus-typed block device is a block device', async () => {
    const b = { ...nydus, source: '/dev/dm-3' };
    expect((await decideRootfs([b], opts())).action).toBe('block');
  });
  it('two or more entries → mount all, in order; no block or nydus check', async () => {
    const asked: string[] = [];
    const d = await decideRootfs([blk, nydus, overlay], {
      disableBlockDeviceUse: false,
      isBlockDevice: async (p) => (asked.push(p), true),
    });
    expect(d).toEqual({ action: 'mount', mounts: [blk, nydus, overlay] });
    expect(asked).toEqual([]);
  });
});

describe('isBlockDevice (real)', () => {
  it('empty path → false', async () => expect(await isBlockDevice('')).toBe(false));
  it('missing path → false', async () => expect(await isBlockDevice('/nonexistent/dev')).toBe(false));
  it('a character device or a regular file → false', async () => {
    expect(await isBlockDevice('/dev/null')).toBe(false);
    expect(await isBlockDevice('/etc/hostname')).toBe(false);
  });
});
