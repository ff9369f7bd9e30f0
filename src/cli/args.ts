/** Argument parsing for every command: node's parseArgs plus the global flags. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { err } from '../errors.ts';

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

/** `30s`, `500ms`, `2m`, `1h` or a bare number of seconds → ms. */
export function duration(v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(v);
  if (!m) throw err.invalid(`not a duration: ${JSON.stringify(v)} (use 500ms, 30s, 2m, 1h)`);
  const n = Number(m[1]);
  return Math.round(n * ({ ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms'] ?? 1000));
}

export function need(p: Parsed, i: number, what: string): string {
  const v = p.positionals[i];
  if (!v) throw err.invalid(`missing ${what}`);
  return v;
}
