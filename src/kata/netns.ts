/**
 * Kata's network namespace rules (kata-create-spec.md §1.5 steps 3 and 5), without side effects:
 * - the path comes from the `linux.namespaces` entry of type `network` (how containerd's CRI plugin hands
 *   over the namespace CNI set up); an entry without a path, or none at all, means "no namespace given";
 * - `disable_new_netns`: nothing is done at all (checkConfig has made sure the model is `none`);
 * - a given path that is the runtime's own namespace: `Host networking requested, not supported by runtime`;
 * - no path: Kata makes a namespace (`NetworkCreated`).
 *
 * Corral's difference: with `internetworking_model = "none"` nothing is plumbed, so no namespace is made
 * or checked either (Kata would still make an empty one and run the VMM in it).
 */
import { stat } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { err } from '../errors.ts';
import type { NetworkModel } from './config-types.ts';
import type { OciSpec } from './oci-types.ts';

export type NetnsDecision =
  | { action: 'none' }
  | { action: 'use'; path: string; model: 'tcfilter' | 'macvtap' }
  | { action: 'create'; model: 'tcfilter' | 'macvtap' };

/** config.json's network namespace path; undefined when the spec names none (or an entry without a path). */
export function netnsPathOf(spec: Pick<OciSpec, 'linux'>): string | undefined {
  const path = spec.linux.namespaces.find((n) => n.type === 'network')?.path;
  return path ? path : undefined;
}

/** Whether `path` is the same namespace as `self` (device and inode of the nsfs files). */
export async function sameNamespace(path: string, self = '/proc/self/ns/net'): Promise<boolean> {
  const [a, b] = await Promise.all([stat(path), stat(self)]);
  return a.dev === b.dev && a.ino === b.ino;
}

/**
 * What to do about the sandbox's network. `isHost` tells whether a path is the runtime's own namespace.
 * @throws InvalidArgument `Host networking requested, not supported by runtime`; for a relative path;
 *   NotFound when the path does not exist.
 */
export async function decideNetns(
  spec: Pick<OciSpec, 'linux'>,
  runtime: { readonly disableNewNetns: boolean; readonly internetworkingModel: NetworkModel },
  isHost: (path: string) => Promise<boolean> = sameNamespace,
): Promise<NetnsDecision> {
  const model = runtime.internetworkingModel;
  if (runtime.disableNewNetns || model === 'none') return { action: 'none' };
  const path = netnsPathOf(spec);
  if (path === undefined) return { action: 'create', model };
  if (!isAbsolute(path)) throw err.invalid(`network namespace path ${JSON.stringify(path)} must be absolute`);
  const host = await isHost(path).catch((e: unknown) => {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT')
      throw err.notFound(`network namespace ${path} (config.json linux.namespaces) does not exist`);
    throw err.invalid(`network namespace ${path}: ${(e as Error).message}`);
  });
  if (host) throw err.invalid('Host networking requested, not supported by runtime');
  return { action: 'use', path, model };
}
