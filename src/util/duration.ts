/**
 * The one duration rule, for every flag and environment variable that takes a duration (`--timeout`,
 * `--grace`, `--lost-after`, `--node-timeout`, `--event-retention` / `CORRAL_EVENT_RETENTION`, the
 * "ago" form of `--since`): a non-negative number, decimals allowed, followed by a unit.
 *
 * | unit | meaning      | example |
 * |------|--------------|---------|
 * | `ms` | milliseconds | `500ms` |
 * | `s`  | seconds      | `30s`   |
 * | `m`  | minutes      | `1.5m`  |
 * | `h`  | hours        | `36h`   |
 * | `d`  | days         | `7d`    |
 *
 * `0` needs no unit. Any other bare number is refused with InvalidArgument naming the flag: Corral used
 * to read one as seconds for timeouts and as days for the event retention, so a bare number has no
 * meaning a user can rely on; refusing it makes an old spelling fail loudly instead of meaning
 * something else (Go's `time.ParseDuration` refuses it too). Every spelling the docs show (`30s`,
 * `500ms`, `2m`, `1h`, `7d`, `36h`, `90m`) keeps working.
 */
import { err } from '../errors.ts';

export const DURATION_UNITS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
export type DurationUnit = keyof typeof DURATION_UNITS;

const FORM = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/;
const EXAMPLES = '500ms, 30s, 2m, 1h, 7d';

/** `v` in milliseconds when it is a number with a unit (or `0`); undefined for anything else. Never throws. */
export function matchDuration(v: string): number | undefined {
  const m = FORM.exec(v.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  if (m[2] === undefined) return n === 0 ? 0 : undefined;
  const ms = Math.round(n * DURATION_UNITS[m[2] as DurationUnit]);
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/**
 * A duration in milliseconds. `what` names the flag or variable for the error (`--timeout`,
 * `--event-retention / CORRAL_EVENT_RETENTION`). With `dflt`, an undefined `v` (flag not given) is `dflt`.
 * @throws InvalidArgument naming `what`: not a number with a unit, a bare number other than 0, negative.
 * @example parseDuration('30s', '--timeout') // 30_000
 */
export function parseDuration(v: string, what: string): number;
export function parseDuration(v: string | undefined, what: string, dflt: number): number;
export function parseDuration(v: string | undefined, what: string, dflt?: number): number {
  if (v === undefined) {
    if (dflt === undefined) throw err.invalid(`${what}: a duration is required (${EXAMPLES})`);
    return dflt;
  }
  const ms = matchDuration(v);
  if (ms !== undefined) return ms;
  const bare = /^\d+(?:\.\d+)?$/.test(v.trim());
  throw err.invalid(
    bare
      ? `${what}: ${JSON.stringify(v)} has no unit; write ${v.trim()}s for seconds (units: ms, s, m, h, d)`
      : `${what}: not a duration: ${JSON.stringify(v)} (a number and a unit: ${EXAMPLES})`,
  );
}
