/**
 * A runtime configuration loaded once per version of its files. Every create resolves a configuration.toml
 * and, before this, parsed and checked it again (issue 13: the TOML parse, the conversion and the host checks
 * on each of a burst of creates). The cache keeps one loaded config per path, keyed by every file that went
 * into it: the file itself and each entry of its `config.d/`, with inode, size and mtime. An edited file, a
 * drop-in added or removed loads it again; a load that fails is not kept (the next create reads it again).
 * The host checks (assets exist, vsock) ran when it was loaded: a kernel removed since fails at boot.
 */
import { stat, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { loadRuntimeConfig, type LoadOptions } from './config-load.ts';
import type { RuntimeConfig } from './config-types.ts';

const stampOf = async (p: string) => {
  const s = await stat(p).catch(() => undefined);
  return s ? `${s.ino}:${s.size}:${s.mtimeMs}` : '-';
};

/** What identifies the files a load of `path` reads. */
async function filesStamp(path: string): Promise<string> {
  const dir = join(dirname(path), 'config.d');
  const entries = await readdir(dir).catch(() => [] as string[]);
  const stamps = await Promise.all([path, dir, ...entries.sort().map((n) => join(dir, n))].map(stampOf));
  return `${entries.sort().join('/')}|${stamps.join('|')}`;
}

export type ConfigLoader = (path: string) => Promise<RuntimeConfig>;

export function cachedRuntimeConfig(opts: LoadOptions = {}, load = loadRuntimeConfig): ConfigLoader {
  const cache = new Map<string, { stamp: string; config: Promise<RuntimeConfig> }>();
  return async (path) => {
    const stamp = await filesStamp(path);
    const hit = cache.get(path);
    if (hit?.stamp === stamp) return hit.config;
    const entry = { stamp, config: load(path, opts) };
    cache.set(path, entry);
    entry.config.catch(() => {
      if (cache.get(path) === entry) cache.delete(path);
    });
    return entry.config;
  };
}
