// Which code a Corral process runs: the bundle that `npm run build` made from src/ (dist/bundle/) when it is
// current (`corral agent --help`: 0.14 s against 0.67 s through tsx, and 0.24 s for tsc's output unbundled), else src/
// through tsx.
// "Current": dist/.stamp holds the fingerprint of src/ the build compiled (every .ts file's path, size and
// mtime), and src/ has that fingerprint now; an edit, a new or removed file, a checkout all change it.
// Plain JavaScript: the entry point (corral.mjs) and the build script (infra/scripts/build.mjs) share it.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = dirname(dirname(fileURLToPath(import.meta.url)));

/** The entry points built into dist/bundle/: `corral` and the containerd shim. */
export const BUNDLED = ['cli/main', 'shim/main'];

/** The name an entry point's file has in dist/bundle/ (`cli/main` → `cli-main`), for the build and for entry(). */
export const bundleName = (module) => module.replace('/', '-');

/** The fingerprint of the sources under `dir` (default: this repository's src/). */
export function fingerprint(dir = join(REPO, 'src')) {
  const h = createHash('sha256');
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) {
        const s = statSync(p);
        h.update(`${p.slice(dir.length)}\0${s.size}\0${s.mtimeMs}\n`);
      }
    }
  };
  walk(dir);
  return h.digest('hex');
}

/**
 * The entry to run: dist/bundle/<dir>-<name>.js when dist/ is current, else src/<module>.ts (through tsx) and why.
 * CORRAL_FROM_SOURCE=1 always takes src/. `module`: cli/main (the `corral` command) or shim/main.
 */
export function entry(repo = REPO, env = process.env, module = 'cli/main') {
  const source = (why) => ({ main: join(repo, `src/${module}.ts`), compiled: false, why });
  if (env.CORRAL_FROM_SOURCE === '1') return source('CORRAL_FROM_SOURCE=1');
  let stamp;
  try {
    stamp = readFileSync(join(repo, 'dist/.stamp'), 'utf8').trim();
  } catch {
    return source('dist/ is not built (npm run build)');
  }
  if (stamp !== fingerprint(join(repo, 'src'))) return source('dist/ is older than src/ (npm run build)');
  return { main: join(repo, `dist/bundle/${bundleName(module)}.js`), compiled: true, why: 'dist/ is current' };
}
