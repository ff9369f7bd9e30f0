/**
 * Which code a corral process runs (bin/dist.mjs): dist/ only while its stamp is the fingerprint of src/ as it
 * is now; src/ (through tsx) when dist/ is missing, when any source changed, was added or removed since the
 * build, or with CORRAL_FROM_SOURCE=1.
 */
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { entry, fingerprint } from '../../bin/dist.mjs';

let repo: string;
afterEach(() => rmSync(repo, { recursive: true, force: true }));

const setUp = () => {
  repo = mkdtempSync('/tmp/corral-dist-');
  mkdirSync(join(repo, 'src/cli'), { recursive: true });
  writeFileSync(join(repo, 'src/cli/main.ts'), 'export {};\n');
  writeFileSync(join(repo, 'src/a.ts'), 'export const a = 1;\n');
  const build = () => {
    mkdirSync(join(repo, 'dist'), { recursive: true });
    writeFileSync(join(repo, 'dist/.stamp'), fingerprint(join(repo, 'src')) + '\n');
  };
  return build;
};

describe('entry', () => {
  it('runs src/ until dist/ is built, then dist/', () => {
    const build = setUp();
    expect(entry(repo, {})).toMatchObject({ compiled: false, main: join(repo, 'src/cli/main.ts') });
    expect(entry(repo, {}).why).toMatch(/not built/);
    build();
    expect(entry(repo, {})).toMatchObject({ compiled: true, main: join(repo, 'dist/bundle/cli-main.js') });
    expect(entry(repo, { CORRAL_FROM_SOURCE: '1' }).compiled).toBe(false);
    // The shim's program (bin/shim.mjs) is chosen the same way.
    expect(entry(repo, {}, 'shim/main')).toMatchObject({
      compiled: true,
      main: join(repo, 'dist/bundle/shim-main.js'),
    });
  });

  it.each([
    ['a source edited', (r: string) => writeFileSync(join(r, 'src/a.ts'), 'export const a = 2;\n')],
    ['a source touched', (r: string) => utimesSync(join(r, 'src/a.ts'), new Date(), new Date(Date.now() + 5000))],
    ['a source added', (r: string) => writeFileSync(join(r, 'src/b.ts'), 'export {};\n')],
    ['a source removed', (r: string) => rmSync(join(r, 'src/a.ts'))],
  ])('goes back to src/ once %s', (_, change) => {
    setUp()();
    change(repo);
    expect(entry(repo, {})).toMatchObject({ compiled: false });
    expect(entry(repo, {}).why).toMatch(/older than src/);
  });
});
