/**
 * A runtime configuration loaded once per version of its files. Every create resolves a configuration.toml
 * and, before this, parsed and checked it again (issue 13: the TOML parse, the conversion and the host checks
 * on each of a burst of creates). The cache keeps one loaded config per path, keyed by every file that went
 * into it: the file itself and each entry of its `config.d/`, with inode, size and mtime. An edited file, a
 * drop-in added or removed loads it again; a load that fails is not kept (the next create reads it again).
 * The host checks (assets exist, vsock) ran when it was loaded: a kernel removed since fails at boot.
 */
import { readdirSync, type Stats } from 'node:fs';
import { dirname, join } from 'node:path';
import { loadRuntimeConfig, type LoadOptions } from './config-load.ts';
import type { RuntimeConfig } from './config-types.ts';
import { statOrUndefined } from './fs.ts';

const stampOf = (s: Stats | undefined) => (s ? `${s.ino}:${s.size}:${s.mtimeMs}` : '-');

const entriesOf = (dir: string) => {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
};

/**
 * What identifies the files a load of `path` reads. Stat'ed synchronously: a few local files, µs each, where
 * the async calls cost ~40 µs of the agent's thread apiece on every create (issue 13).
 */
function filesStamp(path: string): string {
  const dir = join(dirname(path), 'config.d');
  const dirStat = statOrUndefined(dir);
  const entries = dirStat ? entriesOf(dir) : []; // no config.d: no ENOENT error made per create
  const stamps = [statOrUndefined(path), dirStat, ...entries.map((n) => statOrUndefined(join(dir, n)))].map(stampOf);
  return `${entries.join('/')}|${stamps.join('|')}`;
}

export type ConfigLoader = (path: string) => Promise<RuntimeConfig>;

export function cachedRuntimeConfig(opts: LoadOptions = {}, load = loadRuntimeConfig): ConfigLoader {
  const cache = new Map<string, { stamp: string; config: Promise<RuntimeConfig> }>();
  return async (path) => {
    const stamp = filesStamp(path);
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
