import { describe, expect, it } from 'vitest';
import {
  checkFactory,
  checkHypervisorAssets,
  checkNetNs,
  checkPcie,
  validateHypervisorConfig,
} from '../../../src/kata/config-check.ts';
import { expectError } from './expect-error.ts';
import { host, load, qemuToml } from './config-fixture.ts';
import { memFs } from './mem-fs.ts';

const MiB = 1_048_576;

describe('checkConfig pieces (§3.2 step 7)', () => {
  it("network: disable_new_netns only with 'none'", async () => {
    for (const m of ['tcfilter', 'macvtap'] as const) {
      await expectError(
        () => checkNetNs({ disableNewNetns: true, internetworkingModel: m }),
        'InvalidArgument',
        "config disable_new_netns only works with 'none' internetworking_model",
      );
    }
    expect(() => checkNetNs({ disableNewNetns: true, internetworkingModel: 'none' })).not.toThrow();
    expect(() => checkNetNs({ disableNewNetns: false, internetworkingModel: 'tcfilter' })).not.toThrow();
  });

  it('"VM memory cannot be zero"', async () => {
    await expectError(
      () => checkHypervisorAssets({ defaultMemory: 0, image: '', initrd: '/i' }, memFs({ '/i': 'x' })),
      'InvalidArgument',
      'VM memory cannot be zero',
    );
  });

  it('an asset whose size cannot be read → its stat error', async () => {
    await expectError(
      () => checkHypervisorAssets({ defaultMemory: 2048, image: '/gone', initrd: '' }, memFs({})),
      'InvalidArgument',
      'stat /gone: no such file or directory',
    );
  });

  it.each([
    ['image', 1, []],
    ['image', 3000, ['VM memory (2048MB) smaller than image "/a" size (3000MB)']],
    ['image', 2048, ['VM memory (2048MB) smaller than image "/a" size (2048MB)']],
    ['image', 2047, []],
  ] as const)('%s of %i MiB with 2048 MiB memory → warnings %j', async (_, mib, warnings) => {
    expect(
      await checkHypervisorAssets(
        { defaultMemory: 2048, image: '/a', initrd: '' },
        memFs({ '/a': { size: mib * MiB } }),
      ),
    ).toEqual(warnings);
  });

  it('an initrd of at least the memory size is an error', async () => {
    await expectError(
      () =>
        checkHypervisorAssets(
          { defaultMemory: 2048, image: '', initrd: '/a' },
          memFs({ '/a': { size: 2048 * MiB + 5 } }),
        ),
      'InvalidArgument',
      'VM memory (2048MB) smaller than image "/a" size (2048MB)',
    );
  });

  it('the size test needs more than 1 MiB: a 1 MiB initrd passes even with 1 MiB of memory', async () => {
    expect(
      await checkHypervisorAssets({ defaultMemory: 1, image: '', initrd: '/a' }, memFs({ '/a': { size: MiB } })),
    ).toEqual([]);
  });

  it('factory rules', async () => {
    const f = { enableTemplate: true, templatePath: '/t', vmCacheNumber: 0, vmCacheEndpoint: '/e' };
    await expectError(
      () => checkFactory(f, { initrd: '' }, 'qemu'),
      'InvalidArgument',
      'Factory option enable_template requires an initrd image',
    );
    expect(() => checkFactory(f, { initrd: '/i' }, 'qemu')).not.toThrow();
    await expectError(
      () => checkFactory({ ...f, enableTemplate: false, vmCacheNumber: 1 }, { initrd: '' }, 'clh'),
      'InvalidArgument',
      'VM cache just support qemu',
    );
  });

  it('PCIe: hot- and cold-plug are exclusive, each named correctly', async () => {
    await expectError(
      () => checkPcie({ hotPlugVfio: 'bridge-port', coldPlugVfio: 'root-port' }),
      'InvalidArgument',
      'invalid hot-plug=bridge-port and cold-plug=root-port settings, only one of them can be set',
    );
    expect(() => checkPcie({ hotPlugVfio: 'no-port', coldPlugVfio: 'root-port' })).not.toThrow();
  });
});

describe('validateHypervisorConfig (VC level)', () => {
  it('kernel, image and initrd rules; normalisation', async () => {
    const hv = (await load(qemuToml())).hypervisor;
    await expectError(
      () => validateHypervisorConfig({ ...hv, kernel: '' }, 240),
      'InvalidArgument',
      'Missing kernel path',
    );
    await expectError(
      () => validateHypervisorConfig({ ...hv, image: '' }, 240),
      'InvalidArgument',
      'Missing image and initrd path',
    );
    await expectError(
      () => validateHypervisorConfig({ ...hv, initrd: '/i' }, 240),
      'InvalidArgument',
      'Image and initrd path cannot be both set',
    );
    expect(validateHypervisorConfig({ ...hv, defaultVcpus: 0, defaultMaxvcpus: 0 }, 240)).toMatchObject({
      defaultVcpus: 1,
      defaultMaxvcpus: 240,
    });
    expect(validateHypervisorConfig({ ...hv, defaultMaxvcpus: 300 }, 240).defaultMaxvcpus).toBe(240);
    expect(
      validateHypervisorConfig({ ...hv, defaultVcpus: 2, defaultMaxvcpus: 8, confidentialGuest: true }, 240)
        .defaultMaxvcpus,
    ).toBe(2);
  });

  it('a confidential guest boots with max vCPUs = vCPUs from load', async () => {
    const c = await load(qemuToml('confidential_guest = true\ndefault_vcpus = 2'), {}, { host });
    expect(c.hypervisor).toMatchObject({ defaultVcpus: 2, defaultMaxvcpus: 2 });
  });
});
