/** config.json mounts → host steps and guest mounts (src/kata/oci-mounts.ts, src/kata/mount-options.ts). */
import { describe, expect, it } from 'vitest';
import { MS, parseMountOptions } from '../../../src/kata/mount-options.ts';
import {
  DEFAULT_DEVICES,
  hostBindIndexes,
  planMounts,
  resolveBindSources,
  type BindSource,
} from '../../../src/kata/oci-mounts.ts';
import type { OciMount } from '../../../src/kata/oci.ts';
import { expectError } from './expect-error.ts';
import { memFs } from './mem-fs.ts';

const HOST = '/run/corral/sandboxes/sb/shared/c1';
const GUEST = '/run/corral/shared/c1';
const ctx = (sources: [number, BindSource][] = []) => ({ hostDir: HOST, guestDir: GUEST, sources: new Map(sources) });
const mnt = (destination: string, type: string, source: string, options: string[] = []): OciMount => ({
  destination,
  type,
  source,
  options,
});

describe('parseMountOptions (runc parseMountOptions)', () => {
  it.each([
    ['ro', MS.RDONLY],
    ['nosuid', MS.NOSUID],
    ['nodev', MS.NODEV],
    ['noexec', MS.NOEXEC],
    ['sync', MS.SYNCHRONOUS],
    ['dirsync', MS.DIRSYNC],
    ['remount', MS.REMOUNT],
    ['mand', MS.MANDLOCK],
    ['noatime', MS.NOATIME],
    ['nodiratime', MS.NODIRATIME],
    ['relatime', MS.RELATIME],
    ['strictatime', MS.STRICTATIME],
    ['bind', MS.BIND],
    ['rbind', MS.BIND | MS.REC],
    ['silent', MS.SILENT],
    ['acl', MS.POSIXACL],
    ['iversion', MS.I_VERSION],
    ['lazytime', MS.LAZYTIME],
    ['nosymfollow', MS.NOSYMFOLLOW],
    ['rro', MS.RDONLY],
    ['rnosuid', MS.NOSUID],
    ['defaults', 0],
  ])('%s sets %i', (o, bit) => {
    expect(parseMountOptions([o])).toMatchObject({ flags: bit, data: '' });
  });

  it.each([
    ['rw', 'ro', MS.RDONLY],
    ['suid', 'nosuid', MS.NOSUID],
    ['dev', 'nodev', MS.NODEV],
    ['exec', 'noexec', MS.NOEXEC],
    ['async', 'sync', MS.SYNCHRONOUS],
    ['atime', 'noatime', MS.NOATIME],
    ['diratime', 'nodiratime', MS.NODIRATIME],
    ['norelatime', 'relatime', MS.RELATIME],
    ['nostrictatime', 'strictatime', MS.STRICTATIME],
    ['nomand', 'mand', MS.MANDLOCK],
    ['loud', 'silent', MS.SILENT],
    ['noacl', 'acl', MS.POSIXACL],
  ])('%s clears what %s set; the later option wins', (clear, set, bit) => {
    expect(parseMountOptions([set, clear]).flags).toBe(0);
    expect(parseMountOptions([clear, set]).flags).toBe(bit);
  });

  it('propagation goes apart, never into flags', () => {
    const p = parseMountOptions(['rbind', 'rprivate', 'shared', 'rslave', 'unbindable']);
    expect(p.flags).toBe(MS.BIND | MS.REC);
    expect(p.propagation).toBe(MS.PRIVATE | MS.REC | MS.SHARED | MS.SLAVE | MS.UNBINDABLE);
    expect(p.bind).toBe(true);
  });

  it('everything else is data, in order; runc extensions are dropped; idmap is flagged', () => {
    const p = parseMountOptions(['nosuid', 'size=65536k', 'mode=755', 'tmpcopyup', 'nr_inodes=1k', 'uid=5']);
    expect(p).toMatchObject({ flags: MS.NOSUID, data: 'size=65536k,mode=755,nr_inodes=1k,uid=5', bind: false });
    expect(parseMountOptions(['idmap']).idmapped).toBe(true);
  });
});

/** runc's `runc spec` default mounts. */
const RUNC_DEFAULT: OciMount[] = [
  mnt('/proc', 'proc', 'proc'),
  mnt('/dev', 'tmpfs', 'tmpfs', ['nosuid', 'strictatime', 'mode=755', 'size=65536k']),
  mnt('/dev/pts', 'devpts', 'devpts', ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5']),
  mnt('/dev/shm', 'tmpfs', 'shm', ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k']),
  mnt('/dev/mqueue', 'mqueue', 'mqueue', ['nosuid', 'noexec', 'nodev']),
  mnt('/sys', 'sysfs', 'sysfs', ['nosuid', 'noexec', 'nodev', 'ro']),
  mnt('/sys/fs/cgroup', 'cgroup', 'cgroup', ['nosuid', 'noexec', 'nodev', 'relatime', 'ro']),
];
const NNN = MS.NOSUID | MS.NODEV | MS.NOEXEC;
const dev = (d: string) => ({ source: d, target: d, fstype: 'bind', flags: MS.BIND, data: '', file: true });

describe('planMounts', () => {
  it("runc's default mounts: no host steps; /dev gets the guest's device nodes and its own ptmx", () => {
    const p = planMounts(RUNC_DEFAULT, ctx());
    expect(p.host).toEqual([]);
    expect(p.guest).toEqual([
      { source: 'proc', target: '/proc', fstype: 'proc', flags: 0, data: '' },
      {
        source: 'tmpfs',
        target: '/dev',
        fstype: 'tmpfs',
        flags: MS.NOSUID | MS.STRICTATIME,
        data: 'mode=755,size=65536k',
      },
      ...DEFAULT_DEVICES.map(dev),
      {
        source: 'devpts',
        target: '/dev/pts',
        fstype: 'devpts',
        flags: MS.NOSUID | MS.NOEXEC,
        data: 'newinstance,ptmxmode=0666,mode=0620,gid=5',
      },
      { ...dev(`${GUEST}/rootfs/dev/pts/ptmx`), target: '/dev/ptmx' },
      { source: 'shm', target: '/dev/shm', fstype: 'tmpfs', flags: NNN, data: 'mode=1777,size=65536k' },
      { source: 'mqueue', target: '/dev/mqueue', fstype: 'mqueue', flags: NNN, data: '' },
      { source: 'sysfs', target: '/sys', fstype: 'sysfs', flags: NNN | MS.RDONLY, data: '' },
      {
        source: 'cgroup2',
        target: '/sys/fs/cgroup',
        fstype: 'cgroup2',
        flags: NNN | MS.RELATIME | MS.RDONLY,
        data: '',
      },
    ]);
    expect(DEFAULT_DEVICES).toEqual(['/dev/null', '/dev/zero', '/dev/full', '/dev/random', '/dev/urandom', '/dev/tty']);
  });

  it('host binds: a bind step into the share per mount, the guest binds the share path; ro on both sides', () => {
    const mounts = [
      mnt('/data', 'bind', '/b/vol', ['rbind', 'ro', 'rprivate']),
      mnt('/etc/hosts', 'none', '/b/hosts', ['bind', 'rw', 'nosuid']),
      mnt('/x/', 'bind', '/b/we ird$name', ['bind', 'remount', 'noexec']),
    ];
    const p = planMounts(
      mounts,
      ctx([
        [0, { path: '/b/vol', file: false }],
        [1, { path: '/b/hosts', file: true }],
        [2, { path: '/b/we ird$name', file: false }],
      ]),
    );
    expect(p.host).toEqual([
      { kind: 'bind', source: '/b/vol', target: `${HOST}/mounts/0-vol`, readonly: true },
      { kind: 'bind', source: '/b/hosts', target: `${HOST}/mounts/1-hosts`, readonly: false },
      { kind: 'bind', source: '/b/we ird$name', target: `${HOST}/mounts/2-we_ird_name`, readonly: false },
    ]);
    expect(p.guest).toEqual([
      {
        source: `${GUEST}/mounts/0-vol`,
        target: '/data',
        fstype: 'bind',
        flags: MS.BIND | MS.REC | MS.RDONLY,
        data: '',
      },
      {
        source: `${GUEST}/mounts/1-hosts`,
        target: '/etc/hosts',
        fstype: 'bind',
        flags: MS.BIND | MS.NOSUID,
        data: '',
        file: true,
      },
      // MS_REMOUNT is dropped: the guest binds, then remounts itself.
      { source: `${GUEST}/mounts/2-we_ird_name`, target: '/x', fstype: 'bind', flags: MS.BIND | MS.NOEXEC, data: '' },
    ]);
  });

  it('share names stay short for long sources and 64-hex ids', () => {
    const long = `/b/${'v'.repeat(200)}`;
    const p = planMounts([mnt('/d', 'bind', long, ['bind'])], ctx([[0, { path: long, file: false }]]));
    const target = (p.host[0] as { target: string }).target;
    expect(target).toBe(`${HOST}/mounts/0-${'v'.repeat(32)}`);
    const hex = 'a'.repeat(64);
    expect(`/run/corral/sandboxes/${hex}/shared/${hex}/mounts/0-${'v'.repeat(32)}`.length).toBeLessThan(256);
  });

  it("emptyDirs after Kata's rewrite: ephemeral is a guest tmpfs, local a directory made in the share", () => {
    const ED = '/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir';
    const p = planMounts(
      [
        mnt('/cache', 'ephemeral', `${ED}/cache`, ['rbind', 'rprivate', 'rw', 'size=1m']),
        mnt('/work', 'local', `${ED}/work`, ['rbind', 'rprivate', 'rw']),
      ],
      ctx(),
    );
    expect(p.host).toEqual([{ kind: 'mkdir', path: `${HOST}/mounts/1-work`, mode: 0o777 }]);
    expect(p.guest).toEqual([
      { source: 'tmpfs', target: '/cache', fstype: 'tmpfs', flags: 0, data: 'size=1m' },
      { source: `${GUEST}/mounts/1-work`, target: '/work', fstype: 'bind', flags: MS.BIND | MS.REC, data: '' },
    ]);
  });

  it('/dev/shm as a bind (containerd CRI) becomes a 64 MiB tmpfs, as Kata does without a sandbox shm', () => {
    const p = planMounts([mnt('/dev/shm', 'bind', '/run/containerd/x/shm', ['rbind', 'ro'])], ctx());
    expect(p).toEqual({
      host: [],
      guest: [{ source: 'shm', target: '/dev/shm', fstype: 'tmpfs', flags: NNN, data: 'mode=1777,size=65536k' }],
    });
  });

  it("binds of the guest's device nodes need no host step; tmpfs options go to data", () => {
    const p = planMounts(
      [
        mnt('/dev/null', 'bind', '/dev/null', ['bind']),
        mnt('/tmp', 'tmpfs', 'tmpfs', ['nosuid', 'size=10m', 'mode=1777', 'nr_inodes=4k', 'uid=1000', 'gid=1000']),
        mnt('/sys/fs/cgroup', 'cgroup2', 'cgroup2', ['rw', 'nsdelegate']),
      ],
      ctx(),
    );
    expect(p.host).toEqual([]);
    expect(p.guest).toEqual([
      dev('/dev/null'),
      {
        source: 'tmpfs',
        target: '/tmp',
        fstype: 'tmpfs',
        flags: MS.NOSUID,
        data: 'size=10m,mode=1777,nr_inodes=4k,uid=1000,gid=1000',
      },
      { source: 'cgroup2', target: '/sys/fs/cgroup', fstype: 'cgroup2', flags: MS.RDONLY, data: '' },
    ]);
  });

  it.each([
    [mnt('data', 'bind', '/b/v', ['bind']), /mounts\[0\] \(destination "data"\): the destination must be an absolute/],
    [mnt('/a/../etc', 'tmpfs', 'tmpfs'), /destination "\/a\/\.\.\/etc"\): the destination must not contain "\.\."/],
    [mnt('/', 'tmpfs', 'tmpfs'), /"\/" cannot be a mount destination/],
    [
      mnt('/mnt', 'ext4', '/dev/sda1'),
      /mounts\[0\] \(destination "\/mnt"\): type "ext4" cannot be mounted in the guest/,
    ],
    [mnt('/mnt', 'bind', '/b/v', ['bind', 'idmap']), /id-mapped mounts/],
  ])('refuses %j', async (m, msg) => {
    await expectError(() => hostBindIndexes([m]), 'InvalidArgument', msg);
    await expectError(() => planMounts([m], ctx()), 'InvalidArgument', msg);
  });
});

describe('resolveBindSources', () => {
  const fs = memFs({
    '/bundles/vol/a': 'x',
    '/bundles/dir': { dir: true },
    '/bundles/link': { link: '/bundles/dir' },
    '/bundles/out': { link: '/etc' },
    '/etc/passwd': 'root',
    '/roots/b': { link: '/bundles' },
  });
  const bind = (source: string) => mnt('/d', 'bind', source, ['bind']);

  it('resolves symlinks, keeps the root as configured, tells files from directories', async () => {
    const r = await resolveBindSources(
      [bind('/bundles/vol/a'), mnt('/proc', 'proc', 'proc'), bind('/roots/b/link'), bind('/dev/null')],
      ['/roots/b'],
      fs,
    );
    expect([...r]).toEqual([
      [0, { path: '/roots/b/vol/a', file: true }],
      [2, { path: '/roots/b/dir', file: false }],
    ]);
  });

  it('missing source: NotFound; outside the roots (even via a symlink) or relative: InvalidArgument', async () => {
    await expectError(
      () => resolveBindSources([bind('/bundles/nope')], ['/bundles'], fs),
      'NotFound',
      'config.json mounts[0] (destination "/d"): bind source /bundles/nope does not exist',
    );
    for (const s of ['/etc/passwd', '/bundles/out/passwd'])
      await expectError(
        () => resolveBindSources([bind(s)], ['/bundles'], fs),
        'InvalidArgument',
        `config.json mounts[0] (destination "/d"): bind source ${s} is outside the allowed bundle roots (/bundles)`,
      );
    await expectError(() => resolveBindSources([bind('vol/a')], ['/bundles'], fs), 'InvalidArgument', /absolute/);
  });
});
