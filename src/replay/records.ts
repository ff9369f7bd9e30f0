/**
 * The export file of event records: JSON lines, one record per line, so that a history can be attached
 * to a bug report and replayed with no NATS at all (`corral events export`, `corral replay --file`).
 * Records are read from JetStream by the one reader, src/bus/eventlog-reader.ts.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { err } from '../errors.ts';
import type { EventRecord } from '../bus/eventlog-reader.ts';

export function writeRecordsFile(path: string, records: EventRecord[]): void {
  writeFileSync(path, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
}

export function readRecordsFile(path: string): EventRecord[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw err.notFound(`cannot read ${path}: ${(e as Error).message}`);
  }
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map((l, i) => {
      try {
        const r = JSON.parse(l) as EventRecord;
        if (typeof r.seq !== 'number' || typeof r.kind !== 'string') throw new Error('missing seq or kind');
        return r;
      } catch (e) {
        throw err.invalid(`${path}:${i + 1}: not an event record: ${(e as Error).message}`);
      }
    });
}
