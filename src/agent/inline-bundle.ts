/**
 * Bundles of fleet creates: `<root>/<id>/config.json` written from the inline spec, plus the rootfs
 * directory when `root.path` is relative (the request's rootfs entries are mounted onto it). Removal
 * takes only what was written, and only empty directories: never the contents of a mount.
 */
import { mkdirSync, rmdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { isAbsolute, join, normalize } from 'node:path';
import { err } from '../errors.ts';

export function writeInlineBundle(root: string, id: string, spec: Record<string, unknown>): string {
  const bundle = join(root, id);
  try {
    mkdirSync(bundle, { recursive: false, mode: 0o711 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw err.exists(`bundle ${bundle} exists already`);
    mkdirSync(root, { recursive: true });
    mkdirSync(bundle, { mode: 0o711 });
  }
  const rootPath = (spec.root as { path?: unknown } | undefined)?.path;
  if (typeof rootPath === 'string' && rootPath && !isAbsolute(rootPath) && !normalize(rootPath).startsWith('..'))
    mkdirSync(join(bundle, rootPath), { recursive: true, mode: 0o711 });
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
  return bundle;
}

export function removeInlineBundle(bundle: string): void {
  try {
    unlinkSync(join(bundle, 'config.json'));
  } catch {
    /* gone */
  }
  for (const d of [join(bundle, 'rootfs'), bundle]) {
    try {
      rmdirSync(d);
    } catch {
      /* not empty or gone: leave it */
    }
  }
}
