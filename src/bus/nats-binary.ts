/**
 * Which nats-server binary Corral runs (server.ts, cluster-process.ts), first match wins:
 * 1. `CORRAL_NATS_SERVER` when set and not empty (read at every call, so an operator or a test can point
 *    elsewhere);
 * 2. the one infra/scripts/fetch-nats-server.sh unpacked from Debian 13's package into this checkout,
 *    `.corral/nats-server/usr/sbin/nats-server`, when it runs and reports a newer version than PATH's
 *    `nats-server` (or PATH has none);
 * 3. PATH's `nats-server`.
 * Choosing between 2 and 3 runs `--version` on both, synchronously, once per process (a few ms at start).
 * The config for the chosen version is nats-config.ts's; why 2.10.23: docs/decisions/0012.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { inCheckout } from '../util/checkout.ts';
import { compareVersions, parseNatsServerVersion, type ServerVersion } from './nats-config.ts';

/** Where fetch-nats-server.sh puts Debian 13's nats-server (the package's own layout, under .corral/). */
export const FETCHED_NATS_SERVER = inCheckout('.corral/nats-server/usr/sbin/nats-server');

export interface NatsServerChoice {
  /** What to run: a path, or `nats-server` (looked up in PATH). */
  binary: string;
  /** What it reported to `--version`; undefined if it did not run or printed none. */
  version: ServerVersion | undefined;
  /** Why this one, for a log line. */
  why: string;
}

/** `<bin> --version`, parsed; undefined when it does not run or prints no version. */
export function binaryVersion(bin: string, timeoutMs = 10_000): ServerVersion | undefined {
  try {
    const out = execFileSync(bin, ['--version'], {
      encoding: 'utf8',
      timeout: timeoutMs,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return parseNatsServerVersion(out);
  } catch {
    return undefined;
  }
}

/** The fetched binary when it is there and newer than PATH's, else PATH's (steps 2 and 3 above). */
export function chooseNatsServer(opts: { fetched?: string; onPath?: string } = {}): NatsServerChoice {
  const fetched = opts.fetched ?? FETCHED_NATS_SERVER;
  const onPath = opts.onPath ?? 'nats-server';
  const pathVersion = binaryVersion(onPath);
  const fetchedVersion = existsSync(fetched) ? binaryVersion(fetched) : undefined;
  if (fetchedVersion && (!pathVersion || compareVersions(fetchedVersion, pathVersion) > 0))
    return {
      binary: fetched,
      version: fetchedVersion,
      why: `fetched by bootstrap.sh, newer than PATH's nats-server (${pathVersion?.text ?? 'none'})`,
    };
  return {
    binary: onPath,
    version: pathVersion,
    why: fetchedVersion ? `PATH's, not older than ${fetched} (${fetchedVersion.text})` : "PATH's",
  };
}

let chosen: NatsServerChoice | undefined;

/** The binary to run: `CORRAL_NATS_SERVER`, else {@link chooseNatsServer}'s pick (made once per process). */
export function natsServerBinary(): string {
  const override = process.env.CORRAL_NATS_SERVER;
  if (override) return override;
  chosen ??= chooseNatsServer();
  return chosen.binary;
}
