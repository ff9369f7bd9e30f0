/**
 * The one reader of CORRAL_EVENTS against a real nats-server: filters by node, sandbox and kind, a
 * filter that matches nothing answers at once, undecodable records are skipped and reported, and a
 * follow picks up exactly after the read.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventLog, ensureEventStream } from '../../src/bus/eventlog.ts';
import { followRecords, readRecords, type EventRecord } from '../../src/bus/eventlog-reader.ts';
import { subjects } from '../../src/bus/subjects.ts';
import { natsServer, type TestNats } from '../helpers/nats.ts';

let nats: TestNats;
beforeAll(async () => {
  nats = await natsServer();
  await ensureEventStream(nats.nc);
  const a = new EventLog(nats.nc, 'ra');
  const b = new EventLog(nats.nc, 'rb');
  await a.append('s1', 'created', { taskId: 's1' });
  await a.append('s.2', 'created', { taskId: 's.2' });
  await b.append('s1', 'created', { taskId: 's1' });
  await a.append('s1', 'deleted', { taskId: 's1' });
});
afterAll(() => nats?.cleanup());

const view = (rs: EventRecord[]) => rs.map((r) => `${r.node}/${r.sandbox}/${r.kind}`);

describe('readRecords', () => {
  it('filters by node, sandbox (dots included) and kind, in stream order', async () => {
    expect(view(await readRecords(nats.nc))).toEqual([
      'ra/s1/created',
      'ra/s.2/created',
      'rb/s1/created',
      'ra/s1/deleted',
    ]);
    expect(view(await readRecords(nats.nc, { node: 'ra' }))).toEqual([
      'ra/s1/created',
      'ra/s.2/created',
      'ra/s1/deleted',
    ]);
    expect(view(await readRecords(nats.nc, { sandbox: 's1' }))).toEqual([
      'ra/s1/created',
      'rb/s1/created',
      'ra/s1/deleted',
    ]);
    expect(view(await readRecords(nats.nc, { sandbox: 's.2' }))).toEqual(['ra/s.2/created']);
    expect(view(await readRecords(nats.nc, { kind: 'deleted' }))).toEqual(['ra/s1/deleted']);
    const all = await readRecords(nats.nc);
    expect(view(await readRecords(nats.nc, { sinceSeq: all[2]!.seq }))).toEqual(['rb/s1/created', 'ra/s1/deleted']);
  });

  it('a filter that matches nothing answers without waiting for a fetch to expire', async () => {
    const t = Date.now();
    expect(await readRecords(nats.nc, { node: 'nobody' })).toEqual([]);
    expect(Date.now() - t).toBeLessThan(900); // a fetch that finds nothing waits 1 s
  });

  it('skips a record that does not decode, and says so', async () => {
    // 0xc1: never used in MessagePack
    await nats.nc.request(subjects.evt('rc', 'bad', 'created'), new Uint8Array([0xc1]), { timeout: 5000 });
    await new EventLog(nats.nc, 'rc').append('bad', 'deleted', {});
    const skipped: number[] = [];
    const rs = await readRecords(nats.nc, { node: 'rc' }, { onUndecodable: (seq) => skipped.push(seq) });
    expect(view(rs)).toEqual(['rc/bad/deleted']);
    expect(skipped).toHaveLength(1);
    expect(skipped[0]).toBeLessThan(rs[0]!.seq);
  });
});

describe('followRecords', () => {
  it('goes on right after the last record read, with new records only', async () => {
    const past = await readRecords(nats.nc, { node: 'ra' });
    const feed = await followRecords(nats.nc, { node: 'ra' }, past.at(-1)!.seq);
    const got: string[] = [];
    const done = (async () => {
      for await (const r of feed) {
        got.push(`${r.node}/${r.sandbox}/${r.kind}`);
        if (got.length === 2) feed.stop();
      }
    })();
    await new EventLog(nats.nc, 'rb').append('s9', 'created', {}); // another node: not followed
    const log = new EventLog(nats.nc, 'ra');
    await log.append('s3', 'created', {});
    await log.append('s3', 'started', {});
    await done;
    expect(got).toEqual(['ra/s3/created', 'ra/s3/started']);
  });
});
