import { mkdtemp, mkdir, rm, symlink, writeFile, realpath } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validBundle } from '../../../src/kata/bundle.ts';
import { expectError } from './expect-error.ts';
import { memFs } from './mem-fs.ts';

describe('validBundle (§5.1) on a real file system', () => {
  let root: string;
  let bundles: string;
  let outside: string;
  beforeAll(async () => {
    root = await realpath(await mkdtemp(path.join(tmpdir(), 'corral-bundle-')));
    bundles = path.join(root, 'bundles');
    outside = path.join(root, 'outside');
    await mkdir(path.join(bundles, 'b1'), { recursive: true });
    await mkdir(path.join(outside, 'b2'), { recursive: true });
    await writeFile(path.join(bundles, 'file'), 'x');
    await symlink(path.join(bundles, 'b1'), path.join(outside, 'link-in'));
    await symlink(path.join(outside, 'b2'), path.join(bundles, 'link-out'));
    await symlink(bundles, path.join(root, 'roots-link'));
  });
  afterAll(() => rm(root, { recursive: true, force: true }));

  it('returns the real path of a bundle inside an allowed root', async () => {
    expect(await validBundle('c1', path.join(bundles, 'b1'), [bundles])).toBe(path.join(bundles, 'b1'));
  });

  it('resolves symlinks: a link outside the roots pointing inside is accepted, its real path returned', async () => {
    expect(await validBundle('c1', path.join(outside, 'link-in'), [bundles])).toBe(path.join(bundles, 'b1'));
  });

  it('resolves the roots too (a root given through a symlink)', async () => {
    expect(await validBundle('c1', path.join(bundles, 'b1'), [path.join(root, 'roots-link')])).toBe(
      path.join(bundles, 'b1'),
    );
  });

  it('rejects a link inside a root that points outside', async () => {
    const b = path.join(bundles, 'link-out');
    await expectError(
      () => validBundle('c1', b, [bundles]),
      'InvalidArgument',
      `bundle ${b} is outside the allowed bundle roots (${bundles})`,
    );
  });

  it('rejects a bundle outside every root, naming all roots', async () => {
    const b = path.join(outside, 'b2');
    await expectError(
      () => validBundle('c1', b, [bundles, '/nonexistent-root']),
      'InvalidArgument',
      `bundle ${b} is outside the allowed bundle roots (${bundles}, /nonexistent-root)`,
    );
  });

  it('the root itself is not inside itself', async () => {
    await expectError(
      () => validBundle('c1', bundles, [bundles]),
      'InvalidArgument',
      /is outside the allowed bundle roots/,
    );
  });

  it('no roots → nothing is allowed', async () => {
    await expectError(
      () => validBundle('c1', path.join(bundles, 'b1'), []),
      'InvalidArgument',
      /outside the allowed bundle roots \(\)$/,
    );
  });

  it('a missing bundle → "Invalid bundle path \'<b>\': <stat error>"', async () => {
    const b = path.join(bundles, 'missing');
    await expectError(
      () => validBundle('c1', b, [bundles]),
      'InvalidArgument',
      `Invalid bundle path '${b}': stat ${b}: no such file or directory`,
    );
  });

  it('a file → "it should be a directory"', async () => {
    const b = path.join(bundles, 'file');
    await expectError(
      () => validBundle('c1', b, [bundles]),
      'InvalidArgument',
      `Invalid bundle path '${b}', it should be a directory`,
    );
  });
});

describe('validBundle argument rules', () => {
  const fs = memFs({ '/run/b/c1/config.json': '{}' });
  it.each([
    ['', '/run/b/c1', 'Missing container ID'],
    ['c1', '', 'Missing bundle path'],
    ['c1', 'run/b/c1', "Invalid bundle path 'run/b/c1': must be an absolute path"],
    ['c1', './c1', "Invalid bundle path './c1': must be an absolute path"],
    ['c1', '/run/b/../b/c1', "Invalid bundle path '/run/b/../b/c1': '..' segments are not allowed"],
    ['c1', '/run/b/c1/..', "Invalid bundle path '/run/b/c1/..': '..' segments are not allowed"],
  ])('id %j, bundle %j → %s', async (id, bundle, msg) => {
    await expectError(() => validBundle(id, bundle, ['/run/b'], fs), 'InvalidArgument', msg);
  });

  it('a path component that is not a directory gives the stat error text', async () => {
    await expectError(
      () => validBundle('c1', '/run/b/c1/config.json/x', ['/run/b'], fs),
      'InvalidArgument',
      "Invalid bundle path '/run/b/c1/config.json/x': stat /run/b/c1/config.json/x: no such file or directory",
    );
  });

  it('a permission error is reported with its errno text', async () => {
    const f = memFs({ '/run/b/c2': { error: 'EACCES' } });
    await expectError(
      () => validBundle('c2', '/run/b/c2', ['/run/b'], f),
      'InvalidArgument',
      "Invalid bundle path '/run/b/c2': stat /run/b/c2: permission denied",
    );
  });

  it('a root named by a relative path matches nothing', async () => {
    await expectError(
      () => validBundle('c1', '/run/b/c1', ['run/b'], fs),
      'InvalidArgument',
      /outside the allowed bundle roots \(run\/b\)/,
    );
  });

  it('a sibling directory sharing the root as a name prefix is outside', async () => {
    const f = memFs({ '/run/bb/c1': { dir: true }, '/run/b': { dir: true } });
    await expectError(
      () => validBundle('c1', '/run/bb/c1', ['/run/b'], f),
      'InvalidArgument',
      /outside the allowed bundle roots/,
    );
  });
});
