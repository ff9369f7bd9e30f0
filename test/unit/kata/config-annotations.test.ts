import { beforeAll, describe, expect, it } from 'vitest';
import { applyAnnotations } from '../../../src/kata/config-annotations.ts';
import type { RuntimeConfig } from '../../../src/kata/config-types.ts';
import { kernelCmdline } from '../../../src/kata/kernel-params.ts';
import { expectError } from './expect-error.ts';
import { ASSETS, IMAGE, INITRD, host, load, qemuToml } from './config-fixture.ts';
import { memFs } from './mem-fs.ts';

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
valid_entropy_sources = ["/dev/urandom", "/dev/hwrng"]
virtio_fs_extra_args = ["--thread-pool-size=1"]`;
const H = (k: string) => `io.katacontainers.config.hypervisor.${k}`;
const R = (k: string) => `io.katacontainers.config.runtime.${k}`;
const A = (k: string) => `io.katacontainers.config.agent.${k}`;

let open: RuntimeConfig;
const apply = (a: Record<string, string>, c: RuntimeConfig = open, h = host) => applyAnnotations(c, a, { fs, host: h });
const hv = async (a: Record<string, string>, c?: RuntimeConfig) => (await apply(a, c)).hypervisor;
const configWith = (enable: string[], extra = '', image = true) =>
  load(qemuToml(`enable_annotations = ${JSON.stringify(enable)}\n${LISTS}\n${extra}`, { image }), FILES);

beforeAll(async () => {
  open = await configWith(['.*']);
});

describe('applyAnnotations: general', () => {
  it('no annotations → the same values, a new frozen object, the input untouched', async () => {
    const c = await apply({});
    expect(c).toEqual(open);
    expect(c).not.toBe(open);
    expect(Object.isFrozen(c.hypervisor)).toBe(true);
  });
  it('the input config is not modified', async () => {
    await apply({ [H('default_vcpus')]: '4' });
    expect(open.hypervisor.defaultVcpus).toBe(1);
  });
  it('unknown keys, under every prefix, are ignored', async () => {
    expect(
      await apply({ [H('no_such_key')]: 'x', [R('no_such_key')]: 'x', [A('no_such_key')]: 'x', other: 'x' }),
    ).toEqual(open);
  });
});

describe('applyAnnotations: the enable_annotations gate (§3.6)', () => {
  it('a hypervisor key not matched by any regex → "annotation <key> is not enabled"', async () => {
    const c = await configWith([]);
    await expectError(
      () => apply({ [H('default_vcpus')]: '2' }, c),
      'InvalidArgument',
      `annotation ${H('default_vcpus')} is not enabled`,
    );
  });
  it('the gate covers keys Corral does not otherwise handle', async () => {
    const c = await configWith(['default_vcpus']);
    await expectError(
      () => apply({ [H('jailer_path')]: '/x' }, c),
      'InvalidArgument',
      `annotation ${H('jailer_path')} is not enabled`,
    );
  });
  it('matching is unanchored, as regexp.MatchString: "enable_iommu" also enables enable_iommu_platform', async () => {
    const c = await configWith(['enable_iommu']);
    expect((await hv({ [H('enable_iommu_platform')]: 'true' }, c)).enableIommuPlatform).toBe(true);
  });
  it('"path" also enables jailer_path; an anchored "^path$" does not', async () => {
    expect(await apply({ [H('jailer_path')]: '/x' }, await configWith(['path']))).toBeDefined();
    const anchored = await configWith(['^path$']);
    await expectError(
      () => apply({ [H('jailer_path')]: '/x' }, anchored),
      'InvalidArgument',
      /jailer_path is not enabled/,
    );
  });
  it('runtime, agent and other keys are not gated', async () => {
    const c = await apply(
      {
        [R('disable_guest_seccomp')]: 'true',
        [A('enable_tracing')]: 'true',
        'io.katacontainers.enable_vcpus_pinning': 'true',
      },
      await configWith([]),
    );
    expect([c.runtime.disableGuestSeccomp, c.agent.trace, c.runtime.enableVcpusPinning]).toEqual([true, true, true]);
  });
  it('the first disabled key reported is the first in sorted order (deterministic)', async () => {
    const c = await configWith([]);
    await expectError(
      () => apply({ [H('msize_9p')]: '1', [H('default_memory')]: '512' }, c),
      'InvalidArgument',
      `annotation ${H('default_memory')} is not enabled`,
    );
  });
});

describe('applyAnnotations: hypervisor CPU and memory', () => {
  it('default_vcpus up to the host CPUs', async () => {
    expect((await hv({ [H('default_vcpus')]: '4' })).defaultVcpus).toBe(4);
    expect((await hv({ [H('default_vcpus')]: '8' })).defaultVcpus).toBe(8);
    expect((await hv({ [H('default_vcpus')]: '0' })).defaultVcpus).toBe(1);
  });
  it('default_vcpus above the host CPUs', async () => {
    await expectError(
      () => hv({ [H('default_vcpus')]: '9' }),
      'InvalidArgument',
      'Number of cpus 9 specified in annotation default_vcpus is greater than the number of CPUs 8 on the system',
    );
  });
  it.each(['x', '-1', '1.5', ''])('default_vcpus %j → positive numeric error', async (v) => {
    await expectError(
      () => hv({ [H('default_vcpus')]: v }),
      'InvalidArgument',
      `Error parsing annotation for ${H('default_vcpus')}: Please specify positive numeric value`,
    );
  });
  it('default_vcpus beyond uint32 is refused (Kata truncates it)', async () => {
    await expectError(
      () => hv({ [H('default_vcpus')]: '4294967297' }),
      'InvalidArgument',
      `Error parsing annotation for ${H('default_vcpus')}: The number exceeds the maximum allowed for its type`,
    );
  });
  it('default_max_vcpus (the annotation spelling) sets default_maxvcpus', async () => {
    expect((await hv({ [H('default_max_vcpus')]: '4' })).defaultMaxvcpus).toBe(4);
  });
  it('default_max_vcpus above the host CPUs', async () => {
    await expectError(
      () => hv({ [H('default_max_vcpus')]: '9' }),
      'InvalidArgument',
      'Number of cpus 9 in annotation default_maxvcpus is greater than the number of CPUs 8 on the system',
    );
  });
  it('default_max_vcpus above the qemu maximum', async () => {
    await expectError(
      () => apply({ [H('default_max_vcpus')]: '250' }, open, { ...host, cpus: 300 }),
      'InvalidArgument',
      'Number of cpus 250 in annotation default_maxvcpus is greater than max no of CPUs 240 supported for qemu',
    );
  });
  it('default_memory ≥ 256', async () => {
    expect((await hv({ [H('default_memory')]: '256' })).defaultMemory).toBe(256);
    expect((await hv({ [H('default_memory')]: '8192' })).defaultMemory).toBe(8192);
  });
  it('default_memory below 256 is an error (not a fallback to 2048 as in the TOML)', async () => {
    await expectError(
      () => hv({ [H('default_memory')]: '255' }),
      'InvalidArgument',
      `Memory specified in annotation ${H('default_memory')} is less than minimum required 256, ` +
        'please specify a larger value',
    );
  });
});

describe('applyAnnotations: other hypervisor keys', () => {
  it('kernel_params are appended after the configured ones', async () => {
    const h = await hv({ [H('kernel_params')]: 'a=1 b' });
    expect(kernelCmdline(h.kernelParams)).toBe(`${kernelCmdline(open.hypervisor.kernelParams)} a=1 b`);
  });
  it('an empty kernel_params changes nothing', async () => {
    expect((await hv({ [H('kernel_params')]: '' })).kernelParams).toEqual(open.hypervisor.kernelParams);
  });
  it('a key-less kernel param', async () => {
    await expectError(
      () => hv({ [H('kernel_params')]: 'ok =bad' }),
      'InvalidArgument',
      'Error adding kernel parameters in annotation kernel_params : Empty kernel parameter',
    );
  });
  it('machine_type (non-empty only)', async () => {
    expect((await hv({ [H('machine_type')]: 'microvm' })).machineType).toBe('microvm');
    expect((await hv({ [H('machine_type')]: '' })).machineType).toBe('q35');
  });
  it.each(['virtio-9p', 'virtio-fs'])('shared_fs %s', async (v) => {
    expect((await hv({ [H('shared_fs')]: v })).sharedFs).toBe(v);
  });
  it.each(['virtio-fs-nydus', 'none', 'nfs'])('shared_fs %s is not allowed by annotation', async (v) => {
    await expectError(
      () => hv({ [H('shared_fs')]: v }),
      'InvalidArgument',
      `Invalid hypervisor shared file system ${v} specified for annotation shared_fs, ` +
        '(supported file systems: [virtio-9p virtio-fs])',
    );
  });
  it('switching to virtio-fs needs a daemon', async () => {
    const c = await load(
      qemuToml(`enable_annotations = [".*"]\nshared_fs = "virtio-9p"\n${LISTS}`).replace(/virtio_fs_daemon = .*\n/, ''),
      FILES,
    );
    expect(c.hypervisor.virtioFsDaemon).toBe('');
    await expectError(
      () => hv({ [H('shared_fs')]: 'virtio-fs' }, c),
      'InvalidArgument',
      'cannot enable virtio-fs without daemon path',
    );
    expect(
      (await hv({ [H('shared_fs')]: 'virtio-fs', [H('virtio_fs_daemon')]: '/usr/libexec/virtiofsd-alt' }, c))
        .virtioFsDaemon,
    ).toBe('/usr/libexec/virtiofsd-alt');
  });
  it('virtio_fs_daemon must be in valid_virtio_fs_daemon_paths', async () => {
    await expectError(
      () => hv({ [H('virtio_fs_daemon')]: '/etc/shadow' }),
      'InvalidArgument',
      'virtiofs daemon /etc/shadow required from annotation is not valid',
    );
  });
  it('virtio_fs_extra_args (a JSON array) are appended', async () => {
    expect((await hv({ [H('virtio_fs_extra_args')]: '["--announce-submounts"]' })).virtioFsExtraArgs).toEqual([
      '--thread-pool-size=1',
      '--announce-submounts',
    ]);
  });
  it.each(['not json', '{"a":1}', '[1]'])('virtio_fs_extra_args %j is refused', async (v) => {
    await expectError(
      () => hv({ [H('virtio_fs_extra_args')]: v }),
      'InvalidArgument',
      /^Error parsing virtiofsd extra arguments: /,
    );
  });
  it('msize_9p', async () => {
    expect((await hv({ [H('msize_9p')]: '16384' })).msize9p).toBe(16384);
    await expectError(
      () => hv({ [H('msize_9p')]: '0' }),
      'InvalidArgument',
      'Error parsing annotation for msize_9p, please specify positive numeric value',
    );
    await expectError(
      () => hv({ [H('msize_9p')]: 'big' }),
      'InvalidArgument',
      `Error parsing annotation for ${H('msize_9p')}: Please specify positive numeric value`,
    );
  });
  it('block_device_driver', async () => {
    expect((await hv({ [H('block_device_driver')]: 'virtio-blk' })).blockDeviceDriver).toBe('virtio-blk');
    await expectError(
      () => hv({ [H('block_device_driver')]: 'ide' }),
      'InvalidArgument',
      'Invalid hypervisor block storage driver ide specified in annotation ' +
        '(supported drivers: [virtio-scsi virtio-blk virtio-mmio nvdimm virtio-blk-ccw])',
    );
  });
  it.each([
    ['disable_block_device_use', 'disableBlockDeviceUse'],
    ['rootless', 'rootless'],
    ['enable_iommu', 'enableIommu'],
    ['enable_iommu_platform', 'enableIommuPlatform'],
    ['enable_hugepages', 'enableHugepages'],
    ['enable_mem_prealloc', 'enableMemPrealloc'],
  ] as const)('boolean %s', async (key, field) => {
    for (const [v, b] of [
      ['true', true],
      ['1', true],
      ['T', true],
      ['False', false],
      ['0', false],
    ] as const) {
      expect((await hv({ [H(key)]: v }))[field]).toBe(b);
    }
    await expectError(
      () => hv({ [H(key)]: 'yes' }),
      'InvalidArgument',
      `Error parsing annotation for ${H(key)}: Please specify boolean value 'true|false'`,
    );
  });
  it('entropy_source must be in valid_entropy_sources', async () => {
    expect((await hv({ [H('entropy_source')]: '/dev/hwrng' })).entropySource).toBe('/dev/hwrng');
    await expectError(
      () => hv({ [H('entropy_source')]: '/dev/random' }),
      'InvalidArgument',
      'entropy source /dev/random required from annotation is not valid',
    );
  });
});

describe('applyAnnotations: paths need an allow-list match of an existing file', () => {
  it('path in valid_hypervisor_paths', async () => {
    expect((await hv({ [H('path')]: '/usr/bin/qemu-alt' })).path).toBe('/usr/bin/qemu-alt');
  });
  it.each(['/usr/bin/qemu-missing', '/etc/shadow', '/usr/bin/../bin/qemu-alt'])('path %s is refused', async (p) => {
    await expectError(
      () => hv({ [H('path')]: p }),
      'InvalidArgument',
      `hypervisor ${p} required from annotation is not valid`,
    );
  });
  it('an empty allow-list refuses everything', async () => {
    const c = await load(qemuToml('enable_annotations = [".*"]'), FILES);
    await expectError(
      () => hv({ [H('path')]: '/usr/bin/qemu-system-x86_64' }, c),
      'InvalidArgument',
      'hypervisor /usr/bin/qemu-system-x86_64 required from annotation is not valid',
    );
  });
  it('kernel in valid_kernel_paths (Corral)', async () => {
    expect((await hv({ [H('kernel')]: '/opt/kernels/k2' })).kernel).toBe('/opt/kernels/k2');
    await expectError(
      () => hv({ [H('kernel')]: '/etc/shadow' }),
      'InvalidArgument',
      'kernel /etc/shadow required from annotation is not valid',
    );
  });
  it('initrd in valid_initrd_paths (Corral): a host file cannot be loaded into the guest', async () => {
    const c = await configWith(['.*'], `initrd = "${INITRD}"`, false);
    expect((await hv({ [H('initrd')]: '/opt/initrds/r2' }, c)).initrd).toBe('/opt/initrds/r2');
    await expectError(
      () => hv({ [H('initrd')]: '/etc/shadow' }, c),
      'InvalidArgument',
      'initrd /etc/shadow required from annotation is not valid',
    );
  });
  it('image in valid_image_paths (Corral)', async () => {
    expect((await hv({ [H('image')]: '/opt/images/i2' })).image).toBe('/opt/images/i2');
    await expectError(
      () => hv({ [H('image')]: '/etc/shadow' }),
      'InvalidArgument',
      'image /etc/shadow required from annotation is not valid',
    );
  });
  it('image and initrd annotations together → "image and initrd cannot be both set"', async () => {
    await expectError(
      () => hv({ [H('image')]: '/opt/images/i2', [H('initrd')]: '/opt/initrds/r2' }),
      'InvalidArgument',
      'image and initrd cannot be both set',
    );
  });
  it('an initrd annotation on an image config → "Image and initrd path cannot be both set"', async () => {
    expect(open.hypervisor.image).toBe(IMAGE);
    await expectError(
      () => hv({ [H('initrd')]: '/opt/initrds/r2' }),
      'InvalidArgument',
      'Image and initrd path cannot be both set',
    );
  });
});

describe('applyAnnotations: runtime keys (not gated)', () => {
  const rt = async (a: Record<string, string>, c?: RuntimeConfig) => (await apply(a, c)).runtime;
  it.each([
    ['disable_guest_seccomp', 'disableGuestSeccomp'],
    ['sandbox_cgroup_only', 'sandboxCgroupOnly'],
    ['enable_pprof', 'enablePprof'],
  ] as const)('boolean %s', async (key, field) => {
    expect((await rt({ [R(key)]: 'true' }))[field]).toBe(true);
    await expectError(
      () => rt({ [R(key)]: 'on' }),
      'InvalidArgument',
      `Error parsing annotation for ${R(key)}: Please specify boolean value 'true|false'`,
    );
  });
  it('io.katacontainers.enable_vcpus_pinning (no config.runtime prefix)', async () => {
    expect((await rt({ 'io.katacontainers.enable_vcpus_pinning': '1' })).enableVcpusPinning).toBe(true);
  });
  it('guest_selinux_label', async () => {
    expect((await rt({ [R('guest_selinux_label')]: 'system_u:system_r:container_t:s0' })).guestSelinuxLabel).toBe(
      'system_u:system_r:container_t:s0',
    );
  });
  it('experimental: unknown features are refused', async () => {
    await expectError(
      () => rt({ [R('experimental')]: 'a b' }),
      'InvalidArgument',
      `Unsupported experimental feature a specified in annotation ${R('experimental')}`,
    );
  });
  it.each([
    ['macvtap', 'macvtap'],
    ['none', 'none'],
    ['default', 'tcfilter'],
  ])('internetworking_model %s', async (v, m) => {
    expect((await rt({ [R('internetworking_model')]: v })).internetworkingModel).toBe(m);
  });
  it('an unknown internetworking_model', async () => {
    await expectError(
      () => rt({ [R('internetworking_model')]: 'bridged' }),
      'InvalidArgument',
      `Unknown network model specified in annotation ${R('internetworking_model')}`,
    );
  });
  it('vfio_mode', async () => {
    expect((await rt({ [R('vfio_mode')]: 'vfio' })).vfioMode).toBe('vfio');
    await expectError(
      () => rt({ [R('vfio_mode')]: 'x' }),
      'InvalidArgument',
      `Unknown VFIO mode "x" in annotation ${R('vfio_mode')}`,
    );
  });
  it("disable_new_netns still needs the 'none' model (Corral re-checks after annotations)", async () => {
    await expectError(
      () => rt({ [R('disable_new_netns')]: 'true' }),
      'InvalidArgument',
      "config disable_new_netns only works with 'none' internetworking_model",
    );
    expect((await rt({ [R('disable_new_netns')]: 'true', [R('internetworking_model')]: 'none' })).disableNewNetns).toBe(
      true,
    );
  });
});

describe('applyAnnotations: agent keys (not gated)', () => {
  const ag = async (a: Record<string, string>) => (await apply(a)).agent;
  it('kernel_modules are ";"-separated', async () => {
    expect((await ag({ [A('kernel_modules')]: 'e1000e InterruptThrottleRate=3000;i915' })).kernelModules).toEqual([
      'e1000e InterruptThrottleRate=3000',
      'i915',
    ]);
  });
  it('enable_tracing', async () => {
    expect((await ag({ [A('enable_tracing')]: 'true' })).trace).toBe(true);
  });
  it('container_pipe_size', async () => {
    expect((await ag({ [A('container_pipe_size')]: '65536' })).containerPipeSize).toBe(65536);
    await expectError(
      () => ag({ [A('container_pipe_size')]: '-1' }),
      'InvalidArgument',
      `Error parsing annotation for ${A('container_pipe_size')}: Please specify positive numeric value`,
    );
  });
});
