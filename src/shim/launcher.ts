/**
 * The `containerd-shim-corral-v2` launcher: a shell script containerd finds on its PATH (it resolves the
 * runtime `io.containerd.corral.v2` to that name). It runs bin/shim.mjs (the compiled shim when dist/ is
 * current, else its TypeScript through tsx) with an absolute node (containerd's PATH may lack one) and
 * `--no-warnings` (start's output must be the address alone), with the settings that say which agent the
 * shim talks to (config.ts).
 */
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { inCheckout } from '../util/checkout.ts';

export const SHIM_BINARY = 'containerd-shim-corral-v2';
export const RUNTIME_TYPE = 'io.containerd.corral.v2';

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

export interface LauncherOptions {
  /** Settings for the shim (CORRAL_NATS_URL, CORRAL_NODE, CORRAL_CREDS, CORRAL_LOG_LEVEL). */
  env: Record<string, string>;
  node?: string;
}

export function launcherScript(o: LauncherOptions): string {
  const main = inCheckout('bin/shim.mjs');
  return [
    '#!/bin/sh',
    `# ${SHIM_BINARY}: containerd's runtime v2 shim for Corral (${RUNTIME_TYPE}), written by \`corral shim install\`.`,
    ...Object.entries(o.env).map(([k, v]) => `export ${k}=${quote(v)}`),
    `exec ${quote(o.node ?? process.execPath)} --no-warnings ${quote(main)} "$@"`,
    '',
  ].join('\n');
}

/** Writes the launcher into `dir`; returns its path. */
export function writeLauncher(dir: string, o: LauncherOptions): string {
  const path = join(dir, SHIM_BINARY);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, launcherScript(o));
  chmodSync(path, 0o755);
  return path;
}
