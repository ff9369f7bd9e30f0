/**
 * `corral events`: the recorded facts and inputs of CORRAL_EVENTS, past and (with --follow) live;
 * `corral events export`: one sandbox's whole history as JSON lines, the file `corral replay --file` reads.
 * Filters: --sandbox, --node (all nodes unless given; CORRAL_NODE does not filter), --since.
 */
import { err } from '../../errors.ts';
import { followRecords, readRecords, type EventRecord, type ReadFilter } from '../../bus/eventlog-reader.ts';
import { EVENTS_STREAM } from '../../bus/subjects.ts';
import { recordLine } from '../../replay/format.ts';
import { writeRecordsFile } from '../../replay/records.ts';
import { matchDuration } from '../../util/duration.ts';
import { parse, type Parsed } from '../args.ts';
import { client } from '../client.ts';
import type { Io } from '../io.ts';

export const EVENTS_USAGE = `corral events [--sandbox ID] [--node N] [--since SEQ|TIME] [--follow] [--json]
corral events export --sandbox ID -o FILE [--node N]

  --since  a stream sequence (digits), an ISO date, or a duration ago (30s, 10m, 2h, 1d)
  --follow keep printing records as they are appended, until Ctrl-C
  --json   one JSON record per line (the export format)`;

/**
 * `--since`: digits are a stream sequence; a duration (src/util/duration.ts: `10m`) is that long before
 * `now`; anything else an ISO date. A bare number is never a duration, here as everywhere.
 */
export function parseSince(v: string, now = Date.now()): Pick<ReadFilter, 'sinceSeq' | 'sinceTime'> {
  if (/^\d+$/.test(v)) return { sinceSeq: Number(v) };
  const ago = matchDuration(v);
  if (ago !== undefined) return { sinceTime: now - ago };
  const t = /^\d{4}-\d\d-\d\d/.test(v) ? Date.parse(v) : NaN;
  if (Number.isNaN(t))
    throw err.invalid(
      `--since ${JSON.stringify(v)}: ` +
        'expected a sequence (123), a duration ago (10m) or an ISO date (2025-01-31T12:00:00Z)',
    );
  return { sinceTime: t };
}

function filterOf(p: Parsed): ReadFilter {
  return {
    sandbox: p.values.sandbox as string | undefined,
    node: p.values.node as string | undefined,
    ...(p.values.since ? parseSince(p.values.since as string) : {}),
  };
}

export async function eventsCommand(argv: string[], io: Io): Promise<number> {
  if (argv[0] === 'export') return exportCommand(argv.slice(1), io);
  const p = parse(argv, { sandbox: { type: 'string' }, since: { type: 'string' }, follow: { type: 'boolean' } });
  if (p.positionals.length)
    throw err.invalid(`unexpected argument ${JSON.stringify(p.positionals[0])}; see corral events --help`);
  const f = filterOf(p);
  const print = (r: EventRecord) => io.out(p.values.json ? JSON.stringify(r) : recordLine(r));
  const c = await client(p, io.env);
  try {
    const past = await readRecords(c.nc, f);
    past.forEach(print);
    if (!p.values.follow) return 0;
    // Live: from just after the last record read (or, when none matched, from the same start as the
    // read: nothing before it matched, so nothing is printed twice or skipped).
    const feed = await followRecords(c.nc, f, past.at(-1)?.seq);
    const stop = () => feed.stop();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      for await (const r of feed) print(r);
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
    return 0;
  } finally {
    await c.close();
  }
}

async function exportCommand(argv: string[], io: Io): Promise<number> {
  const p = parse(argv, { sandbox: { type: 'string' }, output: { type: 'string', short: 'o' } });
  const sandbox = p.values.sandbox as string | undefined;
  const file = p.values.output as string | undefined;
  if (!sandbox) throw err.invalid('--sandbox ID is required');
  if (!file) throw err.invalid('-o FILE is required');
  const c = await client(p, io.env);
  let records: EventRecord[];
  try {
    records = await readRecords(c.nc, filterOf(p));
  } finally {
    await c.close();
  }
  if (!records.length)
    throw err.notFound(
      `no records of sandbox ${sandbox}${p.values.node ? ` on node ${String(p.values.node)}` : ''} in ${EVENTS_STREAM}`,
    );
  writeRecordsFile(file, records);
  io.out(
    p.values.json
      ? JSON.stringify({ sandbox, file, records: records.length })
      : `exported ${records.length} records of sandbox ${sandbox} to ${file}`,
  );
  return 0;
}
