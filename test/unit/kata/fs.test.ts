/**
 * The real KataFs implementations (src/kata/fs.ts), on a real temp dir: the synchronous `nodeFs` and the async
 * `nodeFsAsync` answer alike, and a failure arrives as a rejection carrying its errno code (never a throw out
 * of the call), which is what resolvePath and the rules read.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errnoOf, nodeFs, nodeFsAsync, resolvePath, type KataFs } from '../../../src/kata/fs.ts';
import { expectError } from './expect-error.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'corral-katafs-'));
  mkdirSync(join(dir, 'd'));
  writeFileSync(join(dir, 'd', 'f'), 'hello');
  symlinkSync(join(dir, 'd'), join(dir, 'link'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The rejection `p` ends in (the test fails if it resolves), and that nothing was thrown before it. */
async function rejection(run: () => Promise<unknown>): Promise<unknown> {
  let p: Promise<unknown> | undefined;
  expect(() => (p = run())).not.toThrow();
  return p!.then(
    () => expect.fail('expected a rejection'),
    (e: unknown) => e,
  );
}

describe.each([
  ['nodeFs (sync)', nodeFs],
  ['nodeFsAsync', nodeFsAsync],
] as [string, KataFs][])('%s', (_, fs) => {
  it('answers the yes/no questions, following symlinks, and never rejects them', async () => {
    expect(await fs.exists(join(dir, 'd', 'f'))).toBe(true);
    expect(await fs.isFile(join(dir, 'd', 'f'))).toBe(true);
    expect(await fs.isDirectory(join(dir, 'link'))).toBe(true);
    expect(await fs.exists(join(dir, 'missing'))).toBe(false);
    expect(await fs.isDirectory(join(dir, 'd', 'f', 'below-a-file'))).toBe(false); // ENOTDIR is a "no"
  });

  it('reads, lists, sizes and resolves', async () => {
    expect(await fs.readFile(join(dir, 'd', 'f'))).toBe('hello');
    expect(await fs.readdir(join(dir, 'd'))).toEqual(['f']);
    expect(await fs.size(join(dir, 'd', 'f'))).toBe(5);
    expect(await fs.realpath(join(dir, 'link', 'f'))).toBe(join(dir, 'd', 'f'));
  });

  it('fails as a rejection with the errno code', async () => {
    for (const run of [
      () => fs.readFile(join(dir, 'missing')),
      () => fs.readdir(join(dir, 'missing')),
      () => fs.size(join(dir, 'missing')),
      () => fs.realpath(join(dir, 'missing')),
    ])
      expect(errnoOf(await rejection(run))).toBe('ENOENT');
    expect(errnoOf(await rejection(() => fs.readFile(join(dir, 'd'))))).toBe('EISDIR');
  });

  it("makes resolvePath's NotFound of a missing path", async () => {
    await expectError(
      () => resolvePath(fs, join(dir, 'missing')),
      'NotFound',
      `file ${join(dir, 'missing')} does not exist`,
    );
  });
});
