/**
 * Shared messages of the event log (eventlog.ts Share) against a real nats-server: records that share go
 * out as one `.batch` message and come back from the reader as themselves, in order, each with the
 * message's sequence and its own subject; a `close` record's sequence covers nothing after it; a record
 * that goes alone seals what waits before it; a message with a caller's id is stored once under it; a
 * `wait` record without a follower is stored anyway, and flush() sends it at once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { EventLog, ensureEventStream } from '../../src/bus/eventlog.ts';
import { followRecords, readRecords, type EventRecord } from '../../src/bus/eventlog-reader.ts';
import { EVENTS_STREAM } from '../../src/bus/subjects.ts';
import { natsServer, type TestNats } from '../helpers/nats.ts';

let nats: TestNats;
let jsm: JetStreamManager;
beforeAll(async () => {
  nats = await natsServer();
  await ensureEventStream(nats.nc);
  jsm = await jetstreamManager(nats.nc);
});
afterAll(() => nats?.cleanup());

const view = (rs: EventRecord[]) => rs.map((r) => `${r.seq}:${r.kind}:${r.subject.split('.').pop()}`);
const subjectAt = async (seq: number) => (await jsm.streams.getMessage(EVENTS_STREAM, { seq }))!.subject;
const lastSeq = async () => (await jsm.streams.info(EVENTS_STREAM)).state.last_seq;

describe('shared messages', () => {
  it('a wait record and the input after it are one message; the reader gives both back, by kind too', async () => {
    const log = new EventLog(nats.nc, 'sh1');
    const state = log.append('s1', 'state', { taskId: 't', value: 'mounting' }, undefined, undefined, 'wait');
    const input = log.append('s1', 'input', { taskId: 't', effect: 'bind', ok: true }, undefined, undefined, 'join');
    const [a, b] = await Promise.all([state, input]);
    expect(b).toBe(a);
    expect(await subjectAt(a)).toBe('corral.v1.evt.sh1.s1.batch');
    expect(view(await readRecords(nats.nc, { node: 'sh1' }))).toEqual([`${a}:state:state`, `${a}:input:input`]);
    const states = await readRecords(nats.nc, { node: 'sh1', kind: 'state' });
    expect(states.map((r) => [r.kind, r.value, r.sandbox, r.node])).toEqual([['state', 'mounting', 's1', 'sh1']]);
    expect(view(await readRecords(nats.nc, { sandbox: 's1', kind: 'input' }))).toEqual([`${a}:input:input`]);

    const feed = await followRecords(nats.nc, { node: 'sh1', kind: 'input' });
    const it = feed[Symbol.asyncIterator]();
    expect(view([(await it.next()).value as EventRecord])).toEqual([`${a}:input:input`]);
    feed.stop();
  });

  it('a close record ends its message: the record after it gets a later sequence', async () => {
    const log = new EventLog(nats.nc, 'sh2');
    const quiet = log.append('s', 'state', { value: 'running' }, undefined, undefined, 'close');
    const next = log.append('s', 'input', { event: { type: 'kill' } }, undefined, undefined, 'join');
    const [q, n] = await Promise.all([quiet, next]);
    expect(n).toBeGreaterThan(q);
    expect(await subjectAt(q)).toBe('corral.v1.evt.sh2.s.state'); // alone: its own subject, as before
  });

  it('a record that goes alone seals what waits before it, and keeps the order', async () => {
    const log = new EventLog(nats.nc, 'sh3');
    const seqs = await Promise.all([
      log.append('s', 'stepDone', { step: 'boot' }, undefined, undefined, 'wait'),
      log.append('s', 'exited', { exitStatus: 0 }, undefined, undefined, 'wait'), // not a shared kind: alone
      log.append('s', 'state', { value: 'stopped' }, undefined, undefined, 'close'),
    ]);
    expect(new Set(seqs).size).toBe(3);
    expect(view(await readRecords(nats.nc, { node: 'sh3' })).map((v) => v.split(':')[1])).toEqual([
      'stepDone',
      'exited',
      'state',
    ]);
  });

  it('a message with a caller id is stored once: the same record sent again under that id is a duplicate', async () => {
    const log = new EventLog(nats.nc, 'sh4');
    const w = log.append('s', 'state', { value: 'booting' }, undefined, undefined, 'wait');
    const first = log.append('s', 'input', { effect: 'boot', ok: true }, 'inst:3:boot', undefined, 'join');
    const seq = await first;
    expect(await w).toBe(seq);
    const before = await lastSeq();
    expect(await log.append('s', 'input', { effect: 'boot', ok: true }, 'inst:3:boot', undefined, 'join')).toBe(seq);
    expect(await lastSeq()).toBe(before);
  });

  it('a wait record with no follower is stored alone, and flush() sends it without waiting', async () => {
    const log = new EventLog(nats.nc, 'sh5', { shareWaitMs: 10 });
    const seq = await log.append('s', 'state', { value: 'booting' }, undefined, undefined, 'wait');
    expect(await subjectAt(seq)).toBe('corral.v1.evt.sh5.s.state');

    const slow = new EventLog(nats.nc, 'sh6', { shareWaitMs: 3_600_000 }); // would outlast the test's timeout
    let stored: number | undefined;
    void slow.append('s', 'state', { value: 'booting' }, undefined, undefined, 'wait').then((s) => (stored = s));
    await slow.flush();
    expect(stored).toBeGreaterThan(seq);
  });

  it('records past the size bound go in another message; kinds that never share go alone', async () => {
    const log = new EventLog(nats.nc, 'sh7');
    const big = 'x'.repeat(200 * 1024);
    const seqs = await Promise.all([
      log.append('s', 'state', { value: big }, undefined, undefined, 'wait'),
      log.append('s', 'input', { value: big }, undefined, undefined, 'join'),
    ]);
    expect(seqs[1]).toBeGreaterThan(seqs[0]);
    const recs = await readRecords(nats.nc, { node: 'sh7' });
    expect(recs.map((r) => (r.value as string).length)).toEqual([big.length, big.length]);

    const d = await Promise.all([
      log.append('s2', 'deleted', {}, undefined, undefined, 'wait'),
      log.append('s2', 'state', { value: 'deleted' }, undefined, undefined, 'join'),
    ]);
    expect(d[1]).toBeGreaterThan(d[0]);
  });
});
