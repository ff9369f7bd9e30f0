// npm run build [-- --if-stale]: compile src/ into dist/ (--if-stale: unless it is current), for the processes whose
// start-up time counts (the agent, the workers, the shim: bin/corral.mjs and bin/shim.mjs run dist/ when it is current).
// Two passes: tsc (types not checked again: `npm run typecheck` and the lint do that) writes dist/ module by module,
// then esbuild bundles its two entry points (cli/main.js, shim/main.js) with their dependencies into dist/bundle/,
// split into chunks so each command still loads only its own code. Node 20 spends most of a start resolving and
// reading modules one by one: the agent's command imports in 60-70 ms bundled against 150-160 ms (measured here). Native modules (koffi, msgpackr's extract addon) stay outside, loaded from node_modules.
// Builds into a fresh directory and moves it into place, so that a process starting meanwhile never sees half a
// build; the stamp is the fingerprint of src/ taken before compiling, so an edit made during the build leaves
// dist/ stale, not wrong.
import { execFileSync } from 'node:child_process';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { build } from 'esbuild';
import { join } from 'node:path';
import { BUNDLED, bundleName, entry, fingerprint, REPO } from '../../bin/dist.mjs';

const stamp = fingerprint();
if (process.argv.includes('--if-stale') && entry(REPO, {}).compiled) {
  console.error('build: dist/ is current');
  process.exit(0);
}
const tmp = join(REPO, `dist.build-${process.pid}`);
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
try {
  execFileSync(process.execPath, [tsc, '-p', join(REPO, 'tsconfig.build.json'), '--outDir', tmp], {
    stdio: 'inherit',
  });
  await build({
    entryPoints: Object.fromEntries(BUNDLED.map((m) => [bundleName(m), join(tmp, `${m}.js`)])),
    outdir: join(tmp, 'bundle'),
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    external: ['koffi', 'msgpackr-extract'],
    // CommonJS dependencies inside an ES module bundle still call require() (of node builtins, of the externals).
    banner: {
      js: "import { createRequire as __corralRequire } from 'node:module'; const require = __corralRequire(import.meta.url);",
    },
    logLevel: 'warning',
  });
  writeFileSync(join(tmp, '.stamp'), stamp + '\n');
  rmSync(join(REPO, 'dist'), { recursive: true, force: true });
  renameSync(tmp, join(REPO, 'dist'));
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
