// npm run build [-- --if-stale]: compile src/ into dist/ (--if-stale: unless it is current) (tsc, types not checked again: `npm run typecheck` and the lint do
// that), for the processes whose start-up time counts (the agent and the workers: bin/corral.mjs runs dist/
// when it is current). Builds into a fresh directory and moves it into place, so that a process starting
// meanwhile never sees half a build; the stamp is the fingerprint of src/ taken before compiling, so an edit
// made during the build leaves dist/ stale, not wrong.
import { execFileSync } from 'node:child_process';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { entry, fingerprint, REPO } from '../../bin/dist.mjs';

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
  writeFileSync(join(tmp, '.stamp'), stamp + '\n');
  rmSync(join(REPO, 'dist'), { recursive: true, force: true });
  renameSync(tmp, join(REPO, 'dist'));
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
