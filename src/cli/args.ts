/** Argument parsing for every command: node's parseArgs plus the global flags. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { err } from '../errors.ts';
import { parseDuration } from '../util/duration.ts';

export const GLOBAL_OPTIONS = {
  nats: { type: 'string' },
  node: { type: 'string' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
  timeout: { type: 'string' },
  creds: { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

export type Parsed = { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] };

export function parse(argv: string[], options: ParseArgsConfig['options'] = {}): Parsed {
  try {
    const r = parseArgs({
      args: argv,
      options: { ...GLOBAL_OPTIONS, ...options },
      allowPositionals: true,
      strict: true,
    });
    return r;
  } catch (e) {
    throw err.invalid((e as Error).message.replace(/\. To specify a positional argument.*$/, ''));
  }
}

/** The duration flag `--<flag>` in ms, or `dflt` when not given (src/util/duration.ts has the rule). */
export function duration(p: Parsed, flag: string, dflt: number): number {
  const v = p.values[flag];
  if (v !== undefined && typeof v !== 'string') throw err.invalid(`--${flag} takes a duration (30s, 5m)`);
  return parseDuration(v, `--${flag}`, dflt);
}

export function need(p: Parsed, i: number, what: string): string {
  const v = p.positionals[i];
  if (!v) throw err.invalid(`missing ${what}`);
  return v;
}
