/**
 * Bundles of fleet creates: `<root>/<id>/config.json` written from the inline spec, plus the rootfs
 * directory when `root.path` is relative (the request's rootfs entries are mounted onto it). Removal
 * takes only what was written, and only empty directories: never the contents of a mount.
 */
import { mkdirSync, readdirSync, rmdirSync, unlinkSync, writeFileSync } from 'node:fs';
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
  try {
    const rootPath = (spec.root as { path?: unknown } | undefined)?.path;
    if (typeof rootPath === 'string' && rootPath.includes('\0'))
      throw err.invalid('spec root.path must not contain NUL');
    if (typeof rootPath === 'string' && rootPath && !isAbsolute(rootPath) && !normalize(rootPath).startsWith('..'))
      mkdirSync(join(bundle, rootPath), { recursive: true, mode: 0o711 });
    let text: string;
    try {
      text = JSON.stringify(spec);
    } catch (e) {
      throw err.invalid(`spec cannot be written as config.json: ${(e as Error).message}`, e);
    }
    writeFileSync(join(bundle, 'config.json'), text);
    return bundle;
  } catch (e) {
    removeInlineBundle(bundle);
    throw e;
  }
}

export function removeInlineBundle(bundle: string): void {
  try {
    unlinkSync(join(bundle, 'config.json'));
  } catch {
    /* gone */
  }
  const prune = (d: string) => {
    try {
      for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) prune(join(d, e.name));
      rmdirSync(d);
    } catch {
      /* not empty or gone: leave it */
    }
  };
  prune(bundle);
}
