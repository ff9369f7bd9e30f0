import { describe, expect, it } from 'vitest';
import { globToRegExp, pathInGlobs } from '../../../src/kata/glob.ts';
import { memFs } from './mem-fs.ts';

describe('globToRegExp (Go filepath.Match)', () => {
  it.each([
    ['/usr/bin/qemu*', '/usr/bin/qemu-system-x86_64', true],
    ['/usr/bin/qemu*', '/usr/bin/qemu/x', false],
    ['/usr/*/qemu', '/usr/bin/qemu', true],
    ['/usr/*', '/usr/bin/qemu', false],
    ['/a/?', '/a/b', true],
    ['/a/?', '/a/bc', false],
    ['/a/?', '/a//', false],
    ['/a/[bc]', '/a/c', true],
    ['/a/[^bc]', '/a/c', false],
    ['/a/[^bc]', '/a/d', true],
    ['/a/[a-c]x', '/a/bx', true],
    ['/a/[a-c]x', '/a/dx', false],
    ['/a/\\*', '/a/*', true],
    ['/a/\\*', '/a/b', false],
    ['/a.b', '/aXb', false],
    ['/a/(b)', '/a/(b)', true],
    ['/a/*', '/a/.hidden', true],
  ])('%j matches %j: %s', (g, p, yes) => expect(globToRegExp(g)?.test(p)).toBe(yes));

  it.each(['[', '/a/[b', '/a/[]', '/a/[]b]', '/a/\\', '/a/[a-]', '/a/[-a]'])(
    '%j is a bad pattern (no match at all)',
    (g) => {
      expect(globToRegExp(g)).toBeUndefined();
    },
  );
});

describe('pathInGlobs (checkPathIsInGlobs)', () => {
  const fs = memFs({ '/usr/bin/qemu-system-x86_64': 'x', '/opt/qemu/bin/qemu': 'x' });
  it('a matching, existing path is in', async () => {
    expect(await pathInGlobs(fs, ['/usr/bin/qemu*'], '/usr/bin/qemu-system-x86_64')).toBe(true);
  });
  it('a matching path that does not exist is not (Glob lists existing files)', async () => {
    expect(await pathInGlobs(fs, ['/usr/bin/*'], '/usr/bin/evil')).toBe(false);
  });
  it('an existing path matching no glob is not', async () => {
    expect(await pathInGlobs(fs, ['/usr/bin/qemu*'], '/opt/qemu/bin/qemu')).toBe(false);
  });
  it('no globs → nothing is allowed', async () => {
    expect(await pathInGlobs(fs, [], '/usr/bin/qemu-system-x86_64')).toBe(false);
  });
  it.each(['/usr/bin/../bin/qemu-system-x86_64', '/usr/bin//qemu-system-x86_64', 'usr/bin/qemu-system-x86_64'])(
    'an unclean or relative path (%j) is not',
    async (p) => {
      expect(await pathInGlobs(fs, ['/usr/bin/*', '/usr/*/*/*', '*/*/*'], p)).toBe(false);
    },
  );
});
