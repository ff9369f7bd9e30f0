/**
 * virtio-fs without QEMU: which virtiofsd and how it is called (both flavours), QEMU's command line for a
 * virtio-fs share (shared memory, vhost-user-fs on microvm and q35) and its read-back for adoption, the
 * boot op's `virtioFs` field, and the socket probe that does not connect.
 */
import { describe, expect, it } from 'vitest';
import type { BootSpec, VirtioFsSpec } from '../../src/domain/ops.ts';
import { parseQemuCmdline, qemuArgs, validateBootSpec, vmPaths } from '../../src/workers/hypervisor/qemu-args.ts';
import { parseBoot } from '../../src/workers/hypervisor/validate.ts';
import { daemonPath, findVirtiofsd, flavourOf, virtiofsdArgs } from '../../src/workers/hypervisor/virtiofsd-args.ts';
import { listening } from '../../src/workers/hypervisor/virtiofsd.ts';

const vfs: VirtioFsSpec = { daemon: '/usr/lib/qemu/virtiofsd', cache: 'auto', extraArgs: [], queueSize: 0 };
const spec = (over: Partial<BootSpec> = {}): BootSpec => ({
  sandboxId: 'sb-1',
  vcpus: 1,
  memoryMiB: 512,
  kernel: '/k',
  initrd: '/i',
  kernelParams: '',
  machineType: 'microvm',
  accel: 'tcg',
  sharedDir: '/run/corral/sandboxes/sb-1/shared',
  msize9p: 8192,
  runDir: '/run/corral/vm',
  virtioFs: vfs,
  ...over,
});
const after = (argv: string[], flag: string) => argv.flatMap((a, i) => (a === flag ? [argv[i + 1]] : []));

describe('which virtiofsd', () => {
  it('the Rust one (Debian 13) before the C one of QEMU (Debian 12); none: NotFound naming both', () => {
    expect(findVirtiofsd(() => true)).toBe('/usr/libexec/virtiofsd');
    expect(findVirtiofsd((p) => p === '/usr/lib/qemu/virtiofsd')).toBe('/usr/lib/qemu/virtiofsd');
    expect(daemonPath({ ...vfs, daemon: '' }, (p) => p === '/usr/lib/qemu/virtiofsd')).toBe('/usr/lib/qemu/virtiofsd');
    expect(daemonPath(vfs, () => true)).toBe('/usr/lib/qemu/virtiofsd'); // virtio_fs_daemon wins
    expect(() => daemonPath({ ...vfs, daemon: '' }, () => false)).toThrow(/\/usr\/libexec\/virtiofsd/);
    expect(() => daemonPath({ ...vfs, daemon: '/nope' }, () => false)).toThrow(
      expect.objectContaining({ code: 'NotFound' }),
    );
  });

  it('the flavour from --version, else from the path', () => {
    expect(flavourOf('virtiofsd version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)\n', '/x/virtiofsd')).toBe('c');
    expect(flavourOf('virtiofsd 1.13.0\n', '/usr/lib/qemu/virtiofsd')).toBe('rust');
    expect(flavourOf('', '/usr/lib/qemu/virtiofsd')).toBe('c');
    expect(flavourOf('', '/usr/libexec/virtiofsd')).toBe('rust');
  });
});

describe("virtiofsd's command line", () => {
  const o = { socket: '/r/corral-x.vfs', sharedDir: '/s', v: vfs };
  it('C: -o options, cache never → none, chroot sandbox, extra args last', () => {
    expect(virtiofsdArgs('c', { ...o, v: { ...vfs, cache: 'never', extraArgs: ['--thread-pool-size=1'] } })).toEqual([
      '--socket-path=/r/corral-x.vfs',
      '-o',
      'source=/s',
      '-o',
      'cache=none',
      '-o',
      'sandbox=chroot',
      '--thread-pool-size=1',
    ]);
  });
  it('Rust: long options, metadata cache', () => {
    expect(virtiofsdArgs('rust', { ...o, v: { ...vfs, cache: 'metadata' } })).toEqual([
      '--socket-path=/r/corral-x.vfs',
      '--shared-dir=/s',
      '--cache=metadata',
      '--sandbox=chroot',
    ]);
  });
  it('refuses what the flavour cannot do', () => {
    expect(() => virtiofsdArgs('c', { ...o, v: { ...vfs, cache: 'metadata' } })).toThrow(/virtio_fs_cache "metadata"/);
    expect(() => virtiofsdArgs('c', { ...o, sharedDir: '/a,b' })).toThrow(/comma/);
    expect(virtiofsdArgs('rust', { ...o, sharedDir: '/a,b' })).toContain('--shared-dir=/a,b');
  });
});

describe("QEMU's command line for a virtio-fs share", () => {
  it('microvm: shared memfd RAM, modern virtio-mmio, vhost-user-fs-device, corral.fs=virtiofs, no 9p', () => {
    const s = spec({ virtioFs: { ...vfs, queueSize: 1024 } });
    const p = vmPaths(s.runDir, s.sandboxId);
    const argv = qemuArgs(s, { accel: 'tcg', paths: p });
    expect(after(argv, '-M')).toEqual(['microvm,pit=on,memory-backend=mem']);
    expect(after(argv, '-object')).toEqual(['memory-backend-memfd,id=mem,size=512M,share=on']);
    expect(after(argv, '-global')).toEqual(['virtio-mmio.force-legacy=false']);
    expect(after(argv, '-chardev')).toContain(`socket,id=vfs,path=${p.vfs}`);
    expect(after(argv, '-device')).toContain('vhost-user-fs-device,chardev=vfs,tag=corral,queue-size=1024');
    expect(after(argv, '-append')[0]).toMatch(/ corral\.fs=virtiofs/);
    expect(after(argv, '-append')[0]).not.toMatch(/corral\.msize/);
    expect(argv).not.toContain('-fsdev');
    expect(parseQemuCmdline(argv)).toMatchObject({ sandboxId: 'sb-1', vfs: p.vfs });
  });
  it('q35: vhost-user-fs-pci, no mmio switch; 9p specs are as before (no vfs read back)', () => {
    const s = spec({ machineType: 'q35' });
    const argv = qemuArgs(s, { accel: 'kvm', paths: vmPaths(s.runDir, s.sandboxId) });
    expect(after(argv, '-device')).toContain('vhost-user-fs-pci,chardev=vfs,tag=corral');
    expect(argv).not.toContain('-global');
    const nine = qemuArgs(spec({ virtioFs: undefined }), { accel: 'kvm', paths: vmPaths('/r', 'sb-1') });
    expect(nine).toContain('-fsdev');
    expect(nine).not.toContain('-object');
    expect(parseQemuCmdline(nine)).not.toHaveProperty('vfs');
  });
  it('the socket is named by the short id: as long as the QMP one', () => {
    const p = vmPaths('/run/corral/vm', 'x'.repeat(128));
    expect(Buffer.byteLength(p.vfs)).toBe(Buffer.byteLength(p.qmp));
  });
  it('queue size: 0 or a power of 2 up to 1024', () => {
    for (const q of [0, 128, 1024])
      expect(() => validateBootSpec(spec({ virtioFs: { ...vfs, queueSize: q } }))).not.toThrow();
    for (const q of [-1, 100, 2048, 1.5])
      expect(() => validateBootSpec(spec({ virtioFs: { ...vfs, queueSize: q } }))).toThrow(/queueSize/);
  });
});

describe('the boot op', () => {
  const req = { ...spec(), virtioFs: { daemon: '', cache: 'auto', extraArgs: ['-o', 'xattr'], queueSize: 0 } };
  it('reads virtioFs; absent or null: a 9p boot', () => {
    expect(parseBoot(req).virtioFs).toEqual(req.virtioFs);
    expect(parseBoot({ ...req, virtioFs: undefined })).not.toHaveProperty('virtioFs');
    expect(parseBoot({ ...req, virtioFs: null })).not.toHaveProperty('virtioFs');
  });
  it('names the bad field', () => {
    expect(() => parseBoot({ ...req, virtioFs: { ...req.virtioFs, extraArgs: [1] } })).toThrow(
      'boot: virtioFs.extraArgs[0] must be a string, got number',
    );
    expect(() => parseBoot({ ...req, virtioFs: 'yes' })).toThrow('boot: virtioFs must be a map, got string');
  });
});

describe('a listening socket, from /proc/net/unix (no probe connection)', () => {
  const table = [
    'Num       RefCount Protocol Flags    Type St Inode Path',
    '0000000051579982: 00000002 00000000 00010000 0001 01 234488 /r/corral-a.vfs',
    '0000000051579983: 00000002 00000000 00000000 0001 03 234489 /r/corral-b.vfs',
  ].join('\n');
  it('listening only with the accept flag, by the whole path', () => {
    expect(listening('/r/corral-a.vfs', table)).toBe(true);
    expect(listening('/r/corral-b.vfs', table)).toBe(false);
    expect(listening('corral-a.vfs', table)).toBe(false);
    expect(listening('/r/corral-c.vfs', table)).toBe(false);
  });
});
