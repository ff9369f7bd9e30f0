/** Consistency checks on a loaded configuration (kata-create-spec.md §3.2 step 7 and the VC-level checks). */
import { err } from '../errors.ts';
import type { FactoryConfig, HypervisorConfig, RuntimeSettings } from './config-types.ts';
import { type KataFs, fsErrorText } from './fs.ts';

/** @throws InvalidArgument `config disable_new_netns only works with 'none' internetworking_model`. */
export function checkNetNs(r: Pick<RuntimeSettings, 'disableNewNetns' | 'internetworkingModel'>): void {
  if (r.disableNewNetns && r.internetworkingModel !== 'none') {
    throw err.invalid("config disable_new_netns only works with 'none' internetworking_model");
  }
}

const MiB = 1_048_576;

/**
 * `checkHypervisorConfig`: memory must be non-zero; each image/initrd that is set must be non-empty;
 * a file over 1 MiB whose size in MiB reaches the VM memory is an error for an initrd (it is read
 * into memory) and a warning for an image. Returns the warnings.
 * @throws InvalidArgument `VM memory cannot be zero`, `image "<p>" is empty`,
 *   `VM memory (<m>MB) smaller than image "<p>" size (<s>MB)`.
 */
export async function checkHypervisorAssets(
  hv: Pick<HypervisorConfig, 'defaultMemory' | 'image' | 'initrd'>,
  fs: KataFs,
): Promise<string[]> {
  if (hv.defaultMemory === 0) throw err.invalid('VM memory cannot be zero');
  const warnings: string[] = [];
  for (const [p, initrd] of [
    [hv.image, false],
    [hv.initrd, true],
  ] as const) {
    if (p === '') continue;
    const size = await fs.size(p).catch((e: unknown) => {
      throw err.invalid(fsErrorText('stat', p, e), e);
    });
    if (size === 0) throw err.invalid(`image ${JSON.stringify(p)} is empty`);
    const sizeMiB = Math.floor(size / MiB);
    if (size > MiB && sizeMiB >= hv.defaultMemory) {
      const msg = `VM memory (${hv.defaultMemory}MB) smaller than image ${JSON.stringify(p)} size (${sizeMiB}MB)`;
      if (initrd) throw err.invalid(msg);
      warnings.push(msg);
    }
  }
  return warnings;
}

/**
 * `checkFactoryConfig`.
 * @throws InvalidArgument `Factory option enable_template requires an initrd image`, `VM cache just support qemu`.
 */
export function checkFactory(f: FactoryConfig, hv: Pick<HypervisorConfig, 'initrd'>, hypervisorType: string): void {
  if (f.enableTemplate && hv.initrd === '')
    throw err.invalid('Factory option enable_template requires an initrd image');
  if (f.vmCacheNumber > 0 && hypervisorType !== 'qemu') throw err.invalid('VM cache just support qemu');
}

/**
 * PCIe: hot-plug and cold-plug VFIO ports cannot both be set (Kata prints the two values under
 * swapped names; Corral names each correctly).
 */
export function checkPcie(hv: Pick<HypervisorConfig, 'hotPlugVfio' | 'coldPlugVfio'>): void {
  if (hv.hotPlugVfio !== 'no-port' && hv.coldPlugVfio !== 'no-port') {
    throw err.invalid(
      `invalid hot-plug=${hv.hotPlugVfio} and cold-plug=${hv.coldPlugVfio} settings, only one of them can be set`,
    );
  }
}

/**
 * The VC-level `validateHypervisorConfig`, run at load and again after annotations: a kernel, and
 * exactly one of image or initrd. Returns the config normalised the same way: 0 vCPUs → 1,
 * max vCPUs 0 or above the arch maximum → that maximum, and a confidential guest's max = vCPUs.
 * @throws InvalidArgument `Missing kernel path`, `Missing image and initrd path`,
 *   `Image and initrd path cannot be both set`.
 */
export function validateHypervisorConfig(hv: HypervisorConfig, archMaxVcpus: number): HypervisorConfig {
  if (hv.kernel === '') throw err.invalid('Missing kernel path');
  if (hv.image === '' && hv.initrd === '') throw err.invalid('Missing image and initrd path');
  if (hv.image !== '' && hv.initrd !== '') throw err.invalid('Image and initrd path cannot be both set');
  const defaultVcpus = hv.defaultVcpus === 0 ? 1 : hv.defaultVcpus;
  const max = hv.defaultMaxvcpus === 0 || hv.defaultMaxvcpus > archMaxVcpus ? archMaxVcpus : hv.defaultMaxvcpus;
  return { ...hv, defaultVcpus, defaultMaxvcpus: hv.confidentialGuest ? defaultVcpus : max };
}
