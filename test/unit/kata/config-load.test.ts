import { describe, expect, it } from 'vitest';
import { kernelCmdline } from '../../../src/kata/kernel-params.ts';
import { expectError } from './expect-error.ts';
import { ASSETS, CONF, IMAGE, INITRD, KERNEL, MiB, QEMU, VIRTIOFSD, host, load, qemuToml } from './config-fixture.ts';

const hv = async (extra: string, files = {}, h = host) => (await load(qemuToml(extra), files, { host: h })).hypervisor;

describe('loadRuntimeConfig: compiled defaults (§3.3)', () => {
  it('a minimal [hypervisor.qemu] table gets every default', async () => {
    const c = await load(qemuToml());
    expect(c.configPath).toBe(CONF);
    expect(c.hypervisorType).toBe('qemu');
    expect(c.hypervisor).toMatchObject({
      path: QEMU,
      kernel: KERNEL,
      image: IMAGE,
      initrd: '',
      firmware: '',
      pflashes: [],
      rootfsType: 'ext4',
      machineType: 'q35',
      kernelParams: [
        { key: 'systemd.unit', value: 'kata-containers.target' },
        { key: 'systemd.mask', value: 'systemd-networkd.service' },
        { key: 'systemd.mask', value: 'systemd-networkd.socket' },
        { key: 'scsi_mod.scan', value: 'none' },
      ],
      defaultVcpus: 1,
      defaultMaxvcpus: 8,
      defaultMemory: 2048,
      defaultMaxmemory: 16384,
      memorySlots: 10,
      memoryOffset: 0,
      defaultBridges: 1,
      disableBlockDeviceUse: false,
      blockDeviceDriver: 'virtio-scsi',
      blockDeviceAio: 'io_uring',
      sharedFs: 'virtio-fs',
      virtioFsDaemon: VIRTIOFSD,
      virtioFsCache: 'never',
      msize9p: 8192,
      rootless: false,
      enableAnnotations: [],
      validHypervisorPaths: [],
      hotPlugVfio: 'no-port',
      coldPlugVfio: 'no-port',
      disableGuestSelinux: true,
      entropySource: '/dev/urandom',
      vhostUserStorePath: '/var/run/kata-containers/vhost-user/',
      disableImageNvdimm: false,
      confidentialGuest: false,
    });
    expect(c.runtime).toMatchObject({
      enableDebug: false,
      enableTracing: false,
      internetworkingModel: 'tcfilter',
      vfioMode: 'guest-kernel',
      disableGuestSeccomp: false,
      enableVcpusPinning: false,
      guestSelinuxLabel: '',
      jaegerEndpoint: '',
      disableNewNetns: false,
      sandboxCgroupOnly: false,
      staticSandboxResourceMgmt: false,
      sandboxBindMounts: [],
      disableGuestEmptyDir: false,
      experimental: [],
      enablePprof: false,
    });
    expect(c.factory).toEqual({
      enableTemplate: false,
      templatePath: '/run/vc/vm/template',
      vmCacheNumber: 0,
      vmCacheEndpoint: '/var/run/kata-containers/cache.sock',
    });
    expect(c.agent).toEqual({
      longLiveConn: false,
      debug: false,
      trace: false,
      kernelModules: [],
      enableDebugConsole: false,
      dialTimeout: 0,
      containerPipeSize: 0,
    });
    expect(c.warnings).toEqual([]);
  });

  it('the result is deep-frozen', async () => {
    const c = await load(qemuToml());
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.hypervisor.kernelParams)).toBe(true);
    expect(Object.isFrozen(c.runtime)).toBe(true);
  });

  it.each([
    ['absent', '', 1],
    ['0', 'default_vcpus = 0', 1],
    ['4', 'default_vcpus = 4', 4],
    ['= host CPUs', 'default_vcpus = 8', 8],
    ['> host CPUs → host CPUs', 'default_vcpus = 9', 8],
    ['negative → host CPUs', 'default_vcpus = -1', 8],
  ])('default_vcpus %s', async (_, line, v) => {
    expect((await hv(line)).defaultVcpus).toBe(v);
  });

  it('default_vcpus is capped by min(host CPUs, arch max), not by default_maxvcpus', async () => {
    expect((await hv('default_vcpus = 6\ndefault_maxvcpus = 2')).defaultVcpus).toBe(6);
    expect((await hv('default_vcpus = 250', {}, { ...host, cpus: 300 })).defaultVcpus).toBe(240);
  });

  it.each([
    ['0 → host CPUs', 'default_maxvcpus = 0', host, 8],
    ['4', 'default_maxvcpus = 4', host, 4],
    ['≥ host CPUs → host CPUs', 'default_maxvcpus = 9', host, 8],
    ['capped at the arch maximum', 'default_maxvcpus = 250', { ...host, cpus: 300 }, 240],
    ['0 on a big host → arch maximum', '', { ...host, cpus: 300 }, 240],
  ])('default_maxvcpus %s', async (_, line, h, v) => {
    expect((await hv(line, {}, h)).defaultMaxvcpus).toBe(v);
  });

  it.each([
    ['', 2048],
    ['default_memory = 0', 2048],
    ['default_memory = 255', 2048],
    ['default_memory = 256', 256],
    ['default_memory = 4096', 4096],
  ])('default_memory %j → %i (below 256 → 2048)', async (line, v) => {
    expect((await hv(line)).defaultMemory).toBe(v);
  });

  it.each([
    ['', 16384],
    ['default_maxmemory = 1000', 1000],
    ['default_maxmemory = 20000', 16384],
  ])('default_maxmemory %j → %i (0 or above host memory → host memory)', async (line, v) => {
    expect((await hv(line)).defaultMaxmemory).toBe(v);
  });

  it.each([
    ['', 1],
    ['default_bridges = 3', 3],
    ['default_bridges = 9', 5],
  ])('default_bridges %j → %i', async (line, v) => {
    expect((await hv(line)).defaultBridges).toBe(v);
  });

  it.each([
    ['msize_9p = 0', 8192],
    ['msize_9p = 16384', 16384],
    ['memory_slots = 0', 10],
  ])('%j', async (line, v) => {
    const h = await hv(line);
    expect(line.startsWith('msize') ? h.msize9p : h.memorySlots).toBe(v);
  });

  it('booleans and lists are copied', async () => {
    const h = await hv(
      'rootless = true\ndisable_block_device_use = true\nenable_annotations = ["enable_iommu"]\n' +
        'valid_hypervisor_paths = ["/usr/bin/qemu*"]\ndisable_guest_selinux = false',
    );
    expect(h).toMatchObject({
      rootless: true,
      disableBlockDeviceUse: true,
      enableAnnotations: ['enable_iommu'],
      validHypervisorPaths: ['/usr/bin/qemu*'],
      disableGuestSelinux: false,
    });
  });

  it('machine_type microvm forces disable_image_nvdimm', async () => {
    expect((await hv('machine_type = "microvm"')).disableImageNvdimm).toBe(true);
  });

  it('arm64 without firmware or pflash forces disable_image_nvdimm', async () => {
    expect((await hv('', {}, { ...host, arch: 'arm64' })).disableImageNvdimm).toBe(true);
    expect((await hv(`pflashes = ["${KERNEL}"]`, {}, { ...host, arch: 'arm64' })).disableImageNvdimm).toBe(false);
  });

  it('machine_accelerators and cpu_features are trimmed comma lists', async () => {
    const h = await hv('machine_accelerators = " nvdimm , ,x"\ncpu_features = "pmu=off,"');
    expect([h.machineAccelerators, h.cpuFeatures]).toEqual(['nvdimm,x', 'pmu=off']);
  });
});

describe('loadRuntimeConfig: kernel parameters (§3.4)', () => {
  it('user kernel_params come last', async () => {
    expect(kernelCmdline((await hv('kernel_params = "quiet systemd.unit=x"')).kernelParams)).toBe(
      'systemd.unit=kata-containers.target systemd.mask=systemd-networkd.service ' +
        'systemd.mask=systemd-networkd.socket scsi_mod.scan=none quiet systemd.unit=x',
    );
  });
  it('an initrd gets no systemd params; virtio-blk no scsi param; agent params follow', async () => {
    const c = await load(
      `${qemuToml(`initrd = "${INITRD}"\nblock_device_driver = "virtio-blk"`, { image: false })}\n` +
        '[agent.kata]\nenable_debug = true\ndebug_console_enabled = true',
    );
    expect(kernelCmdline(c.hypervisor.kernelParams)).toBe(
      'agent.log=debug agent.debug_console agent.debug_console_vport=1026',
    );
  });
  it('"Empty kernel parameter"', async () => {
    await expectError(() => hv('kernel_params = "a =b"'), 'InvalidArgument', 'Empty kernel parameter');
  });
});

describe('loadRuntimeConfig: value rules', () => {
  it.each(['virtio-9p', 'virtio-fs', 'virtio-fs-nydus', 'none'])('shared_fs %s is accepted', async (v) => {
    expect((await hv(`shared_fs = "${v}"`)).sharedFs).toBe(v);
  });
  it('an invalid shared_fs is rejected', async () => {
    await expectError(
      () => hv('shared_fs = "nfs"'),
      'InvalidArgument',
      `${CONF}: Invalid hypervisor shared file system nfs specified ` +
        '(supported file systems: [virtio-9p virtio-fs virtio-fs-nydus none])',
    );
  });
  it.each(['virtio-fs', 'virtio-fs-nydus'])('%s requires virtio_fs_daemon', async (v) => {
    const toml = `[hypervisor.qemu]\npath = "${QEMU}"\nkernel = "${KERNEL}"\nimage = "${IMAGE}"\nshared_fs = "${v}"`;
    await expectError(
      () => load(toml),
      'InvalidArgument',
      `${CONF}: cannot enable ${v} without daemon path in configuration file`,
    );
  });
  it('virtio-9p needs no daemon', async () => {
    const toml =
      `[hypervisor.qemu]\npath = "${QEMU}"\nkernel = "${KERNEL}"\nimage = "${IMAGE}"\n` + 'shared_fs = "virtio-9p"';
    expect((await load(toml)).hypervisor.sharedFs).toBe('virtio-9p');
  });
  it.each(['virtio-scsi', 'virtio-blk', 'virtio-mmio', 'nvdimm', 'virtio-blk-ccw'])(
    'block_device_driver %s is accepted',
    async (v) => {
      expect((await hv(`block_device_driver = "${v}"`)).blockDeviceDriver).toBe(v);
    },
  );
  it('an invalid block_device_driver is rejected', async () => {
    await expectError(
      () => hv('block_device_driver = "ide"'),
      'InvalidArgument',
      `${CONF}: Invalid hypervisor block storage driver ide specified ` +
        '(supported drivers: [virtio-scsi virtio-blk virtio-mmio nvdimm virtio-blk-ccw])',
    );
  });
  it('an invalid block_device_aio is rejected', async () => {
    await expectError(
      () => hv('block_device_aio = "posix"'),
      'InvalidArgument',
      `${CONF}: Invalid hypervisor block storage I/O mechanism posix specified ` +
        '(supported AIO: [io_uring native threads])',
    );
  });
  it('an invalid extra_monitor_socket is rejected', async () => {
    await expectError(
      () => hv('extra_monitor_socket = "telnet"'),
      'InvalidArgument',
      `${CONF}: Invalid hypervisor extra monitor socket telnet specified (supported values: [hmp qmp qmp-pretty])`,
    );
  });
  it('an invalid hot_plug_vfio port is rejected', async () => {
    await expectError(
      () => hv('hot_plug_vfio = "any-port"'),
      'InvalidArgument',
      `${CONF}: invalid hot_plug_vfio value "any-port" (allowed: no-port, bridge-port, root-port, switch-port)`,
    );
  });
  it('hot_plug_vfio and cold_plug_vfio cannot both be set', async () => {
    await expectError(
      () => hv('hot_plug_vfio = "root-port"\ncold_plug_vfio = "bridge-port"'),
      'InvalidArgument',
      'invalid hot-plug=root-port and cold-plug=bridge-port settings, only one of them can be set',
    );
    expect((await hv('cold_plug_vfio = "root-port"')).coldPlugVfio).toBe('root-port');
  });
  it('an enable_annotations entry must be a valid regular expression', async () => {
    await expectError(
      () => hv('enable_annotations = ["("]'),
      'InvalidArgument',
      `${CONF}: enable_annotations entry "(" is not a valid regular expression`,
    );
  });
});

describe('loadRuntimeConfig: files must exist (qemu conversion)', () => {
  it.each([
    ['path', QEMU],
    ['kernel', KERNEL],
    ['image', IMAGE],
  ])('a missing %s → NotFound "<file>: file <p> does not exist"', async (_, p) => {
    await expectError(
      () => load(qemuToml(), { [p]: { error: 'ENOENT' } }),
      'NotFound',
      `${CONF}: file ${p} does not exist`,
    );
  });
  it('a missing initrd → NotFound', async () => {
    await expectError(
      () => load(qemuToml('initrd = "/nope/initrd"', { image: false })),
      'NotFound',
      `${CONF}: file /nope/initrd does not exist`,
    );
  });
  it('the compiled default path is used and checked when "path" is absent', async () => {
    const toml = `[hypervisor.qemu]\nkernel = "${KERNEL}"\nimage = "${IMAGE}"\nvirtio_fs_daemon = "${VIRTIOFSD}"`;
    expect((await load(toml)).hypervisor.path).toBe(QEMU);
    await expectError(
      () => load(toml, { [QEMU]: { error: 'ENOENT' } }),
      'NotFound',
      `${CONF}: file ${QEMU} does not exist`,
    );
  });
  it('the compiled default kernel is /usr/share/kata-containers/vmlinuz.container', async () => {
    const toml = `[hypervisor.qemu]\npath = "${QEMU}"\nimage = "${IMAGE}"\nvirtio_fs_daemon = "${VIRTIOFSD}"`;
    await expectError(
      () => load(toml),
      'NotFound',
      `${CONF}: file /usr/share/kata-containers/vmlinuz.container does not exist`,
    );
  });
  it('a missing pflash → "failed to resolve path: <p>: ..."', async () => {
    await expectError(
      () => hv('pflashes = ["/nope/flash"]'),
      'NotFound',
      `${CONF}: failed to resolve path: /nope/flash: file /nope/flash does not exist`,
    );
  });
  it.each(['firmware', 'firmware_volume'])('a missing %s → NotFound', async (k) => {
    await expectError(() => hv(`${k} = "/nope/fw"`), 'NotFound', `${CONF}: file /nope/fw does not exist`);
  });
  it('a relative path is rejected', async () => {
    await expectError(() => hv('firmware = "fw.bin"'), 'InvalidArgument', `${CONF}: path fw.bin must be absolute`);
  });
  it('symlinks are resolved', async () => {
    const c = await load(qemuToml().replace(KERNEL, '/boot/vmlinux'), { '/boot/vmlinux': { link: KERNEL } });
    expect(c.hypervisor.kernel).toBe(KERNEL);
  });
  it('/dev/vhost-vsock must exist', async () => {
    await expectError(
      () => load(qemuToml(), { '/dev/vhost-vsock': { error: 'ENOENT' } }),
      'FailedPrecondition',
      `${CONF}: host system doesn't support vsock: stat /dev/vhost-vsock: no such file or directory`,
    );
    expect(
      (await load(qemuToml(), { '/dev/vhost-vsock': { error: 'ENOENT' } }, { requireVsock: false })).hypervisorType,
    ).toBe('qemu');
  });
});

describe('loadRuntimeConfig: image and initrd', () => {
  it('exactly one: both → "Image and initrd path cannot be both set"', async () => {
    await expectError(() => hv(`initrd = "${INITRD}"`), 'InvalidArgument', 'Image and initrd path cannot be both set');
  });
  it('exactly one: neither → "Missing image and initrd path"', async () => {
    await expectError(() => load(qemuToml('', { image: false })), 'InvalidArgument', 'Missing image and initrd path');
  });
  it('an initrd alone is fine', async () => {
    expect((await load(qemuToml(`initrd = "${INITRD}"`, { image: false }))).hypervisor).toMatchObject({
      initrd: INITRD,
      image: '',
    });
  });
  it('an empty image → `image "<p>" is empty`', async () => {
    await expectError(() => load(qemuToml(), { [IMAGE]: { size: 0 } }), 'InvalidArgument', `image "${IMAGE}" is empty`);
  });
  it('an initrd whose size in MiB reaches the VM memory is an error', async () => {
    await expectError(
      () =>
        load(qemuToml(`initrd = "${INITRD}"\ndefault_memory = 512`, { image: false }), {
          [INITRD]: { size: 512 * MiB },
        }),
      'InvalidArgument',
      `VM memory (512MB) smaller than image "${INITRD}" size (512MB)`,
    );
  });
  it('an image that large is only a warning', async () => {
    const c = await load(qemuToml('default_memory = 256'));
    expect(c.warnings).toEqual([`VM memory (256MB) smaller than image "${IMAGE}" size (256MB)`]);
  });
  it('files of at most 1 MiB are never compared with memory', async () => {
    const c = await load(qemuToml(`initrd = "${INITRD}"\ndefault_memory = 256`, { image: false }), {
      [INITRD]: { size: MiB },
    });
    expect(c.warnings).toEqual([]);
  });
});

describe('loadRuntimeConfig: hypervisor sections', () => {
  it('an invalid section name', async () => {
    await expectError(
      () => load(`${qemuToml()}\n[hypervisor.kvm]\npath = "x"`),
      'InvalidArgument',
      `${CONF}: configuration file contains invalid hypervisor section: "kvm"`,
    );
  });
  it('no hypervisor section at all (Corral: an error, not unverified compiled defaults)', async () => {
    await expectError(
      () => load('[runtime]\nenable_debug = true'),
      'InvalidArgument',
      `${CONF}: configuration file contains no hypervisor section; Corral needs [hypervisor.qemu]`,
    );
  });
  it('several hypervisor sections (Kata picks one at random; Corral refuses)', async () => {
    await expectError(
      () => load(`${qemuToml()}\n[hypervisor.clh]\npath = "x"`),
      'InvalidArgument',
      `${CONF}: configuration file contains several hypervisor sections ("clh", "qemu"); exactly one is allowed`,
    );
  });
  it.each(['clh', 'firecracker', 'acrn', 'dragonball'])('a valid but unsupported hypervisor (%s)', async (name) => {
    await expectError(
      () => load(`[hypervisor.${name}]\npath = "${QEMU}"`),
      'InvalidArgument',
      `${CONF}: hypervisor "${name}" is not supported by Corral (only "qemu")`,
    );
  });
});

describe('loadRuntimeConfig: [agent.*] and [factory]', () => {
  it('an agent table sets LongLiveConn and its keys', async () => {
    const c = await load(
      `${qemuToml()}\n[agent.kata]\nenable_tracing = true\n` +
        'kernel_modules = ["e1000e InterruptThrottleRate=3000"]\ndial_timeout = 45',
    );
    expect(c.agent).toEqual({
      longLiveConn: true,
      debug: false,
      trace: true,
      kernelModules: ['e1000e InterruptThrottleRate=3000'],
      enableDebugConsole: false,
      dialTimeout: 45,
      containerPipeSize: 0,
    });
    expect(kernelCmdline(c.hypervisor.kernelParams)).toContain('agent.trace=true');
  });
  it('several agent tables are refused', async () => {
    await expectError(
      () => load(`${qemuToml()}\n[agent.kata]\n[agent.other]`),
      'InvalidArgument',
      `${CONF}: configuration file contains several agent sections ("kata", "other"); at most one is allowed`,
    );
  });
  it('enable_template requires an initrd', async () => {
    await expectError(
      () => load(`${qemuToml()}\n[factory]\nenable_template = true`),
      'InvalidArgument',
      'Factory option enable_template requires an initrd image',
    );
    const c = await load(
      `${qemuToml(`initrd = "${INITRD}"`, { image: false })}\n[factory]\nenable_template = true\ntemplate_path = "/t"`,
    );
    expect(c.factory).toMatchObject({ enableTemplate: true, templatePath: '/t' });
  });
  it('vm_cache_number > 0 is accepted with qemu', async () => {
    expect((await load(`${qemuToml()}\n[factory]\nvm_cache_number = 3`)).factory.vmCacheNumber).toBe(3);
  });
});

describe('loadRuntimeConfig: [runtime]', () => {
  const rt = async (lines: string, files = {}) => (await load(`${qemuToml()}\n[runtime]\n${lines}`, files)).runtime;
  it.each([
    ['default', 'tcfilter'],
    ['tcfilter', 'tcfilter'],
    ['macvtap', 'macvtap'],
    ['none', 'none'],
  ])('internetworking_model %s → %s', async (v, m) => {
    expect((await rt(`internetworking_model = "${v}"`)).internetworkingModel).toBe(m);
  });
  it('an unknown internetworking_model → "Unknown type X"', async () => {
    await expectError(() => rt('internetworking_model = "bridged"'), 'InvalidArgument', 'Unknown type bridged');
  });
  it('[C-bug fixed] vfio_mode defaults to guest-kernel; "vfio" can be chosen', async () => {
    expect((await rt('')).vfioMode).toBe('guest-kernel');
    expect((await rt('vfio_mode = "vfio"')).vfioMode).toBe('vfio');
  });
  it('an unknown vfio_mode → "Unknown VFIO mode X"', async () => {
    await expectError(() => rt('vfio_mode = "passthrough"'), 'InvalidArgument', 'Unknown VFIO mode passthrough');
  });
  it("disable_new_netns needs internetworking_model = 'none'", async () => {
    await expectError(
      () => rt('disable_new_netns = true'),
      'InvalidArgument',
      "config disable_new_netns only works with 'none' internetworking_model",
    );
    expect((await rt('disable_new_netns = true\ninternetworking_model = "none"')).disableNewNetns).toBe(true);
  });
  it('an unknown experimental feature → error', async () => {
    await expectError(
      () => rt('experimental = ["newstore"]'),
      'InvalidArgument',
      'Unsupported experimental feature "newstore"',
    );
  });
  it('flags and strings are copied', async () => {
    expect(
      await rt(
        [
          'enable_debug = true',
          'enable_tracing = true',
          'disable_guest_seccomp = true',
          'enable_vcpus_pinning = true',
          'guest_selinux_label = "system_u:system_r:container_t"',
          'static_sandbox_resource_mgmt = true',
          'sandbox_cgroup_only = true',
          'enable_pprof = true',
          'disable_guest_empty_dir = true',
          'jaeger_endpoint = "http://j:14268/api/traces"',
          'jaeger_user = "u"',
          'jaeger_password = "p"',
        ].join('\n'),
      ),
    ).toMatchObject({
      enableDebug: true,
      enableTracing: true,
      disableGuestSeccomp: true,
      enableVcpusPinning: true,
      guestSelinuxLabel: 'system_u:system_r:container_t',
      staticSandboxResourceMgmt: true,
      sandboxCgroupOnly: true,
      enablePprof: true,
      disableGuestEmptyDir: true,
      jaegerEndpoint: 'http://j:14268/api/traces',
      jaegerUser: 'u',
      jaegerPassword: 'p',
    });
  });
  it('sandbox_bind_mounts must resolve', async () => {
    await expectError(
      () => rt('sandbox_bind_mounts = ["/nope"]'),
      'NotFound',
      'sandbox-bindmounts: Failed to resolve path: /nope: file /nope does not exist',
    );
  });
  it('sandbox_bind_mounts base names must be unique (after resolving)', async () => {
    await expectError(
      () =>
        rt('sandbox_bind_mounts = ["/a/data", "/b/link"]', {
          '/a/data': 'x',
          '/c/data': 'y',
          '/b/link': { link: '/c/data' },
        }),
      'InvalidArgument',
      'sandbox-bindmounts: File /c/data has base that matches already specified bindmount',
    );
  });
  it('valid sandbox_bind_mounts are kept as written', async () => {
    expect(
      (
        await rt('sandbox_bind_mounts = ["/a/data", "/b/link"]', {
          '/a/data': 'x',
          '/c/other': 'y',
          '/b/link': { link: '/c/other' },
        })
      ).sandboxBindMounts,
    ).toEqual(['/a/data', '/b/link']);
  });
});

describe('loadRuntimeConfig: TOML problems', () => {
  it('the main file missing → NotFound', async () => {
    await expectError(
      () => load('', { [CONF]: { error: 'ENOENT' } }),
      'NotFound',
      `open ${CONF}: no such file or directory`,
    );
  });
  it('malformed TOML → InvalidArgument naming the file', async () => {
    await expectError(
      () => load('[hypervisor.qemu\npath = 1'),
      'InvalidArgument',
      new RegExp(`^${CONF}: Invalid TOML document: .+ \\(line 1, column \\d+\\)$`),
    );
  });
  it.each([
    ['default_vcpus = "2"', 'hypervisor.qemu.default_vcpus must be an integer from -2147483648 to 2147483647'],
    ['default_vcpus = 1.5', 'hypervisor.qemu.default_vcpus must be an integer from -2147483648 to 2147483647'],
    ['default_memory = -1', 'hypervisor.qemu.default_memory must be an integer from 0 to 4294967295'],
    ['default_maxvcpus = 4294967296', 'hypervisor.qemu.default_maxvcpus must be an integer from 0 to 4294967295'],
    [
      'memory_offset = 18446744073709551615',
      'hypervisor.qemu.memory_offset must be an integer from 0 to 9007199254740991',
    ],
    ['rootless = "yes"', 'hypervisor.qemu.rootless must be a boolean'],
    ['enable_annotations = "enable_iommu"', 'hypervisor.qemu.enable_annotations must be an array of strings'],
    ['valid_hypervisor_paths = [1]', 'hypervisor.qemu.valid_hypervisor_paths must be an array of strings'],
    ['machine_type = 35', 'hypervisor.qemu.machine_type must be a string'],
  ])('%s → a type error naming the key', async (line, msg) => {
    await expectError(() => hv(line), 'InvalidArgument', `${CONF}: ${msg}`);
  });
  it.each([
    ['hypervisor = 5', 'hypervisor must be a table'],
    ['[hypervisor]\nqemu = 1', 'hypervisor.qemu must be a table'],
    ['runtime = []', 'runtime must be a table'],
    [`${qemuToml()}\n[runtime]\nenable_debug = 1`, 'runtime.enable_debug must be a boolean'],
    [
      `${qemuToml()}\n[agent.kata]\ndial_timeout = -1`,
      'agent.kata.dial_timeout must be an integer from 0 to 4294967295',
    ],
    [
      `${qemuToml()}\n[factory]\nvm_cache_number = "3"`,
      'factory.vm_cache_number must be an integer from 0 to 9007199254740991',
    ],
  ])('%j → %s', async (toml, msg) => {
    await expectError(() => load(toml), 'InvalidArgument', `${CONF}: ${msg}`);
  });
  it('unknown keys and tables are warnings, not errors', async () => {
    const c = await load(
      `${qemuToml('future_knob = 1')}\n[runtime]\nnew_thing = true\n[image]\nservice_offload = false\n[other]\nx = 1`,
    );
    expect(c.warnings).toEqual([
      `${CONF}: unknown configuration key other ignored`,
      `${CONF}: unknown configuration key hypervisor.qemu.future_knob ignored`,
      `${CONF}: unknown configuration key runtime.new_thing ignored`,
    ]);
  });
  it('the assets are untouched by a failed load (sanity)', () => {
    expect(Object.keys(ASSETS)).toContain(QEMU);
  });
});

describe('loadRuntimeConfig: the shape `corral up` writes', () => {
  it('initrd, microvm, virtio-9p without a daemon, one agent table, no new netns', async () => {
    const toml = [
      '[hypervisor.qemu]',
      `path = "${QEMU}"`,
      `kernel = "${KERNEL}"`,
      `initrd = "${INITRD}"`,
      'machine_type = "microvm"',
      'default_vcpus = 1',
      'default_memory = 512',
      'shared_fs = "virtio-9p"',
      'disable_block_device_use = true',
      '[agent.corral]',
      'dial_timeout = 120',
      '[runtime]',
      'internetworking_model = "none"',
      'disable_new_netns = true',
    ].join('\n');
    const c = await load(toml, { '/dev/vhost-vsock': { error: 'ENOENT' } }, { requireVsock: false });
    expect(c.hypervisor).toMatchObject({
      initrd: INITRD,
      image: '',
      machineType: 'microvm',
      disableImageNvdimm: true,
      defaultMemory: 512,
      sharedFs: 'virtio-9p',
    });
    expect(c.agent.dialTimeout).toBe(120);
    expect(c.runtime).toMatchObject({ internetworkingModel: 'none', disableNewNetns: true });
    expect(kernelCmdline(c.hypervisor.kernelParams)).toBe('scsi_mod.scan=none');
  });
});
