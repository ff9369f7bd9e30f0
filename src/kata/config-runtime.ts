/**
 * Checks of the `[runtime]` table that Kata makes while loading (kata-create-spec.md §3.2): the
 * network model and VFIO mode, and the sandbox bind mounts.
 */
import * as path from 'node:path';
import { err } from '../errors.ts';
import {
  NETWORK_MODELS,
  type RUNTIME_KEYS,
  VFIO_MODES,
  type NetworkModel,
  type Raw,
  type VfioMode,
} from './config-types.ts';
import { type KataFs, resolvePath } from './fs.ts';
import { oneOf, prefixed } from './util.ts';

/** `internetworking_model` and `vfio_mode`: checked only when non-empty, as Kata does. */
export function networkAndVfio(r: Raw<typeof RUNTIME_KEYS>): {
  internetworkingModel: NetworkModel;
  vfioMode: VfioMode;
} {
  const model = r.internetworking_model || 'default';
  if (!oneOf(NETWORK_MODELS, model)) throw err.invalid(`Unknown type ${model}`);
  const vfio = r.vfio_mode || 'guest-kernel';
  if (!oneOf(VFIO_MODES, vfio)) throw err.invalid(`Unknown VFIO mode ${vfio}`);
  return { internetworkingModel: model === 'default' ? 'tcfilter' : model, vfioMode: vfio };
}

/**
 * `sandbox_bind_mounts`: each must resolve, and base names must be unique.
 * @throws `sandbox-bindmounts: Failed to resolve path: <m>: <err>` (the resolve error's code),
 *   InvalidArgument `sandbox-bindmounts: File <p> has base that matches already specified bindmount`.
 */
export async function validateBindMounts(fs: KataFs, mounts: readonly string[]): Promise<void> {
  const bases = new Set<string>();
  for (const m of mounts) {
    const real = await resolvePath(fs, m).catch((e: unknown) => {
      throw prefixed(`sandbox-bindmounts: Failed to resolve path: ${m}`, e);
    });
    const base = path.basename(real);
    if (bases.has(base))
      throw err.invalid(`sandbox-bindmounts: File ${real} has base that matches already specified bindmount`);
    bases.add(base);
  }
}
