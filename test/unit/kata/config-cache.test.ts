/** The runtime config cache (src/kata/config-cache.ts): one load per version of the files, on a real temp dir. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cachedRuntimeConfig } from '../../../src/kata/config-cache.ts';
import type { RuntimeConfig } from '../../../src/kata/config-types.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'corral-cfgcache-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A loader that counts its calls and returns a distinct object each time. */
function counting(fail = () => false) {
  const calls: string[] = [];
  const load = (p: string) => {
    calls.push(p);
    if (fail()) return Promise.reject(new Error('bad config'));
    return Promise.resolve({ configPath: p, n: calls.length } as unknown as RuntimeConfig);
  };
  return { calls, load };
}

describe('cachedRuntimeConfig', () => {
  it('loads a file once while it and its drop-ins stay as they are', async () => {
    const file = join(dir, 'configuration.toml');
    writeFileSync(file, 'a');
    const { calls, load } = counting();
    const get = cachedRuntimeConfig({}, load);
    const first = await get(file);
    expect(await get(file)).toBe(first);
    expect(await get(file)).toBe(first);
    expect(calls).toHaveLength(1);
  });

  it('loads again after the file changes, a drop-in appears, changes or goes', async () => {
    const file = join(dir, 'configuration.toml');
    writeFileSync(file, 'a');
    const { calls, load } = counting();
    const get = cachedRuntimeConfig({}, load);
    await get(file);
    writeFileSync(file, 'ab');
    await get(file);
    mkdirSync(join(dir, 'config.d'));
    writeFileSync(join(dir, 'config.d', '10-x.toml'), 'x');
    await get(file);
    writeFileSync(join(dir, 'config.d', '10-x.toml'), 'xy');
    await get(file);
    rmSync(join(dir, 'config.d', '10-x.toml'));
    await get(file);
    await get(file);
    expect(calls).toHaveLength(5);
  });

  it('does not keep a load that failed', async () => {
    const file = join(dir, 'configuration.toml');
    writeFileSync(file, 'a');
    let failing = true;
    const { calls, load } = counting(() => failing);
    const get = cachedRuntimeConfig({}, load);
    await expect(get(file)).rejects.toThrow('bad config');
    failing = false;
    await expect(get(file)).resolves.toMatchObject({ configPath: file });
    expect(calls).toHaveLength(2);
  });
});
