/**
 * `corral replay ID`: rebuild sandbox ID's actors from its log (CORRAL_EVENTS, or an exported file with
 * no NATS at all) with the real machine definitions and the recorded effect outcomes, and print the
 * timeline. Exit 0 when every rebuilt state equals the recorded one; 1 with one line naming the first
 * divergent step otherwise. `--html FILE` writes the self-contained viewer page instead of the timeline.
 */
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline/promises';
import { err } from '../../errors.ts';
import { replay, type ReplayResult, type TimelineEntry } from '../../replay/engine.ts';
import { divergenceLine, entryLine, summaryLines, TIMELINE_HEADER } from '../../replay/format.ts';
import { replayHtml } from '../../replay/html.ts';
import { readRecords, type EventRecord } from '../../bus/eventlog-reader.ts';
import { readRecordsFile } from '../../replay/records.ts';
import { need, parse } from '../args.ts';
import { client } from '../client.ts';
import type { Io } from '../io.ts';

export const REPLAY_USAGE = `corral replay ID [--file FILE] [--node N] [--until SEQ] [--step | --json | --html FILE]

  --file FILE   read an export (corral events export) instead of NATS: no NATS, no worker needed
  --until SEQ   stop after this stream sequence
  --step        wait for Enter after each entry (q + Enter stops); needs a terminal on stdin
  --json        {sandbox, ok, divergence, lastSeq, inputs, tasks (final and visited states), timeline}
  --html FILE   write a self-contained page: swimlanes, the statechart, each event's payload`;

/** Thrown from the step prompt when the user types q: ends the replay early, not an error. */
class Quit extends Error {}

export async function replayCommand(argv: string[], io: Io): Promise<number> {
  const p = parse(argv, {
    file: { type: 'string' },
    until: { type: 'string' },
    step: { type: 'boolean' },
    html: { type: 'string' },
  });
  const id = need(p, 0, 'sandbox ID');
  const until = p.values.until as string | undefined;
  if (until !== undefined && !/^\d+$/.test(until))
    throw err.invalid(`--until ${JSON.stringify(until)}: expected a stream sequence (digits)`);
  const step = p.values.step === true;
  if (step && (p.values.json || p.values.html))
    throw err.invalid('--step shows the timeline one entry at a time: it does not combine with --json or --html');
  if (step && !process.stdin.isTTY)
    throw err.invalid(
      '--step waits for Enter on a terminal, but stdin is not a TTY; run it in a terminal, or drop --step',
    );

  const node = p.values.node as string | undefined;
  const file = p.values.file as string | undefined;
  let records: EventRecord[];
  if (file) records = readRecordsFile(file).filter((r) => r.sandbox === id && (!node || r.node === node));
  else {
    const c = await client(p, io.env);
    try {
      records = await readRecords(c.nc, { sandbox: id, node });
    } finally {
      await c.close();
    }
  }
  const from = file ?? 'the event log';
  if (!records.length) throw err.notFound(`no records of sandbox ${id}${node ? ` on node ${node}` : ''} in ${from}`);
  const nodes = [...new Set(records.map((r) => r.node))];
  if (nodes.length > 1)
    throw err.invalid(`sandbox ${id} has records from nodes ${nodes.join(', ')}: pick one with --node`);

  const t0 = records.reduce((m, r) => Math.min(m, r.at), Infinity);
  const rl = step ? createInterface({ input: process.stdin, output: process.stderr }) : undefined;
  let at = 0;
  const onEntry = async (e: TimelineEntry) => {
    at = e.seq;
    io.out(entryLine(e, t0));
    if (rl && (await rl.question('')).trim().toLowerCase() === 'q') throw new Quit('quit');
  };
  const human = !p.values.json && !p.values.html;
  if (human)
    io.out(`replay of sandbox ${id} on node ${nodes[0]} from ${from}: ${records.length} records\n${TIMELINE_HEADER}`);
  if (rl) io.err('(Enter: next entry, q + Enter: stop)');
  let result: ReplayResult;
  try {
    result = await replay(records, {
      until: until === undefined ? undefined : Number(until),
      onEntry: human ? onEntry : undefined,
    });
  } catch (e) {
    if (!(e instanceof Quit)) throw e;
    io.out(`stopped after seq ${at}`);
    return 0;
  } finally {
    rl?.close();
  }
  for (const t of result.tasks) t.actor.stop();
  if (!result.tasks.length)
    throw err.notFound(
      `no create of sandbox ${id} in ${from} (the log may have lost its beginning): nothing to rebuild`,
    );

  if (p.values.html) {
    const html = replayHtml({ sandbox: id, node: nodes[0]!, source: from, result });
    writeFileSync(p.values.html as string, html);
    io.out(
      `wrote ${p.values.html as string} (${result.timeline.length} entries, ${(html.length / 1024).toFixed(0)} KiB)`,
    );
  } else if (p.values.json) {
    io.out(
      JSON.stringify({
        sandbox: id,
        node: nodes[0],
        ok: !result.divergence,
        divergence: result.divergence ?? null,
        lastSeq: result.lastSeq,
        inputs: result.inputs,
        tasks: result.tasks.map((t) => ({
          taskId: t.taskId,
          machine: t.machine,
          instance: t.instance,
          state: t.actor.getSnapshot().value,
          visited: t.visited.map((v) => JSON.parse(v) as unknown),
        })),
        timeline: result.timeline,
      }),
    );
  } else {
    for (const l of summaryLines(result).slice(0, -1)) io.out(l);
    if (!result.divergence) io.out(summaryLines(result).at(-1)!);
  }
  if (result.divergence) {
    io.err(`corral: ${divergenceLine(result.divergence)}`);
    return 1;
  }
  return 0;
}
