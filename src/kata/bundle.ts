/** Bundle validation (kata-create-spec.md §5.1) plus Corral's bundle-root confinement. */
import * as path from 'node:path';
import { err } from '../errors.ts';
import { type KataFs, nodeFs, fsErrorText } from './fs.ts';
import { isWithin } from './util.ts';

/**
 * Kata's `validBundle`, hardened: returns the bundle's real path (symlinks followed), which is
 * what `config.json` is read from. `<bundle>/rootfs` keeps using the raw path (§1.2 step 6).
 *
 * Corral additions: the bundle must be absolute and free of `..` segments, and its real path must
 * lie strictly inside the real path of one of `allowedRoots` (relative or missing roots match nothing).
 * @throws InvalidArgument with Kata's messages (`Missing container ID`, `Missing bundle path`,
 *   `Invalid bundle path '<b>': <stat error>`, `Invalid bundle path '<b>', it should be a directory`)
 *   or Corral's (`bundle <b> is outside the allowed bundle roots (<roots>)`).
 */
export async function validBundle(
  id: string,
  bundle: string,
  allowedRoots: readonly string[],
  fs: KataFs = nodeFs,
): Promise<string> {
  if (!id) throw err.invalid('Missing container ID');
  if (!bundle) throw err.invalid('Missing bundle path');
  if (!path.isAbsolute(bundle)) throw err.invalid(`Invalid bundle path '${bundle}': must be an absolute path`);
  if (bundle.split('/').includes('..'))
    throw err.invalid(`Invalid bundle path '${bundle}': '..' segments are not allowed`);
  let real: string;
  try {
    real = await fs.realpath(bundle);
  } catch (e) {
    throw err.invalid(`Invalid bundle path '${bundle}': ${fsErrorText('stat', bundle, e)}`, e);
  }
  if (!(await fs.isDirectory(real))) throw err.invalid(`Invalid bundle path '${bundle}', it should be a directory`);
  // A root that does not resolve (missing, unreadable) holds no bundle: it is simply not a match.
  const roots = await Promise.all(
    allowedRoots.map(async (r) => (path.isAbsolute(r) ? fs.realpath(r).catch(() => undefined) : undefined)),
  );
  if (!roots.some((r) => r !== undefined && isWithin(r, real))) {
    throw err.invalid(`bundle ${bundle} is outside the allowed bundle roots (${allowedRoots.join(', ')})`);
  }
  return real;
}
