import { describe, expect, it } from 'vitest';
import type { LogRecord } from '../../src/bus/eventlog-reader.ts';
import { sandboxesToPurge } from '../../src/bus/retention.ts';

const DAY = 86_400_000;
const NOW = 100 * DAY;
const WEEK = 7 * DAY;

/** A tiny log builder: records get increasing sequences, like the stream gives them. */
function log() {
  const rs: LogRecord[] = [];
  let seq = 0;
  const add = (sandbox: string, kind: string, at: number, extra: Record<string, unknown> = {}, node = 'n1') =>
    rs.push({ seq: ++seq, node, sandbox, kind, at, taskId: sandbox, ...extra });
  return {
    rs,
    /** One whole sandbox life: create input, state, created, started, exited, deleted, trailing state. */
    life(sandbox: string, endedAt: number, node = 'n1') {
      const first = seq + 1;
      add(sandbox, 'input', endedAt - 1000, { event: { type: 'create', rid: 'r' } }, node);
      add(sandbox, 'state', endedAt - 990, {}, node);
      add(sandbox, 'created', endedAt - 900, {}, node);
      add(sandbox, 'started', endedAt - 800, {}, node);
      add(sandbox, 'exited', endedAt - 700, {}, node);
      add(sandbox, 'input', endedAt - 10, { event: { type: 'delete', rid: 'r2' } }, node);
      add(sandbox, 'deleted', endedAt, {}, node);
      add(sandbox, 'state', endedAt + 1, {}, node);
      return { first, last: seq };
    },
    add,
  };
}

describe('sandboxesToPurge', () => {
  it('keeps a running sandbox, whatever its age', () => {
    const l = log();
    l.add('run', 'input', 1, { event: { type: 'create' } });
    l.add('run', 'created', 2);
    l.add('run', 'started', 3);
    expect(sandboxesToPurge(l.rs, NOW, WEEK)).toEqual([]);
  });

  it('keeps a deleted sandbox until the retention period passed, then purges all of it (stragglers included)', () => {
    const l = log();
    const life = l.life('old', NOW - WEEK - 1);
    l.life('recent', NOW - WEEK + 1);
    expect(sandboxesToPurge(l.rs, NOW, WEEK)).toEqual([
      {
        node: 'n1',
        sandbox: 'old',
        subject: 'corral.v1.evt.n1.old.>',
        upToSeq: life.last,
        endedAt: NOW - WEEK - 1,
        records: 8,
      },
    ]);
    expect(sandboxesToPurge(l.rs, NOW, WEEK).map((d) => d.sandbox)).not.toContain('recent');
    // exactly at the boundary it goes
    expect(sandboxesToPurge(l.rs, NOW + 1, WEEK).map((d) => d.sandbox)).toEqual(['old', 'recent']);
  });

  it("a reused id: purges the old sandbox only, up to the new one's create input", () => {
    const l = log();
    const old = l.life('web', NOW - 30 * DAY);
    l.add('web', 'input', NOW - DAY, { event: { type: 'create', rid: 'new' } });
    l.add('web', 'created', NOW - DAY + 5);
    const [d, ...rest] = sandboxesToPurge(l.rs, NOW, WEEK);
    expect(rest).toEqual([]);
    expect(d).toMatchObject({ sandbox: 'web', upToSeq: old.last, records: 8 });
  });

  it('several ended incarnations: purges through the latest one that is old enough', () => {
    const l = log();
    l.life('x', NOW - 40 * DAY);
    const second = l.life('x', NOW - 20 * DAY);
    l.life('x', NOW - DAY); // within retention: kept
    expect(sandboxesToPurge(l.rs, NOW, WEEK)).toEqual([
      expect.objectContaining({ sandbox: 'x', upToSeq: second.last, records: 16, endedAt: NOW - 20 * DAY }),
    ]);
  });

  it('a rolled-back create ends the sandbox when nothing is left over; with leftovers it is kept', () => {
    const l = log();
    l.add('clean', 'input', NOW - 9 * DAY, { event: { type: 'create' } });
    l.add('clean', 'rolledBack', NOW - 9 * DAY, { leftovers: [], undone: ['mountRootfs'] });
    l.add('dirty', 'input', NOW - 9 * DAY, { event: { type: 'create' } });
    l.add('dirty', 'rolledBack', NOW - 9 * DAY, { leftovers: [{ kind: 'removeUser' }] });
    expect(sandboxesToPurge(l.rs, NOW, WEEK).map((d) => d.sandbox)).toEqual(['clean']);
  });

  it(
    "a pod container's deleted fact does not end its sandbox; " +
      "the sandbox's does, and takes the containers' records along",
    () => {
      const l = log();
      l.add('pod', 'input', NOW - 20 * DAY, { event: { type: 'create' } });
      l.add('pod', 'created', NOW - 20 * DAY);
      l.add('pod', 'input', NOW - 20 * DAY, { taskId: 'c1', event: { type: 'create' } });
      l.add('pod', 'created', NOW - 20 * DAY, { taskId: 'c1' });
      l.add('pod', 'deleted', NOW - 19 * DAY, { taskId: 'c1' });
      expect(sandboxesToPurge(l.rs, NOW, WEEK)).toEqual([]);
      l.add('pod', 'deleted', NOW - 18 * DAY);
      expect(sandboxesToPurge(l.rs, NOW, WEEK)).toEqual([
        expect.objectContaining({ sandbox: 'pod', upToSeq: 6, records: 6 }),
      ]);
    },
  );

  it('keeps nodes apart and ignores records it cannot place', () => {
    const l = log();
    l.life('same', NOW - 10 * DAY, 'n1');
    l.life('same', NOW - DAY, 'n2');
    l.rs.push({ seq: 999, kind: 'deleted', at: 0 } as unknown as LogRecord);
    expect(sandboxesToPurge(l.rs, NOW, WEEK).map((d) => `${d.node}/${d.sandbox}`)).toEqual(['n1/same']);
  });

  it('given only the deleted facts, ends each purge at the fact itself (the janitor then reads the history)', () => {
    const l = log();
    l.life('a', NOW - 10 * DAY);
    const facts = l.rs.filter((r) => r.kind === 'deleted');
    expect(sandboxesToPurge(facts, NOW, WEEK)).toEqual([
      expect.objectContaining({ sandbox: 'a', upToSeq: 7, records: 1 }),
    ]);
  });

  it('writes ids with dots as subjects do (`~`)', () => {
    const l = log();
    l.life('a.b', NOW - 10 * DAY);
    expect(sandboxesToPurge(l.rs, NOW, WEEK)[0]?.subject).toBe('corral.v1.evt.n1.a~b.>');
  });

  it('does not depend on the order records are given in', () => {
    const l = log();
    l.life('web', NOW - 30 * DAY);
    l.add('web', 'input', NOW - DAY, { event: { type: 'create' } });
    expect(sandboxesToPurge([...l.rs].reverse(), NOW, WEEK)).toEqual(sandboxesToPurge(l.rs, NOW, WEEK));
  });
});

describe('Settings.eventRetentionMs', () => {
  it('defaults to 7 days; CORRAL_EVENT_RETENTION or the flag sets it; a bad value is InvalidArgument', async () => {
    const { loadSettings } = await import('../../src/agent/settings.ts');
    expect(loadSettings({ node: 'n' }, {}).eventRetentionMs).toBe(7 * DAY);
    expect(loadSettings({ node: 'n' }, { CORRAL_EVENT_RETENTION: '36h' }).eventRetentionMs).toBe(36 * 3_600_000);
    expect(loadSettings({ node: 'n', eventRetention: '30d' }, { CORRAL_EVENT_RETENTION: '36h' }).eventRetentionMs).toBe(
      30 * DAY,
    );
    expect(() => loadSettings({ node: 'n' }, { CORRAL_EVENT_RETENTION: 'forever' })).toThrowError(
      expect.objectContaining({ code: 'InvalidArgument' }),
    );
    // A bare number was days here and seconds for --timeout: now it needs a unit (src/util/duration.ts).
    expect(() => loadSettings({ node: 'n' }, { CORRAL_EVENT_RETENTION: '2' })).toThrowError(
      expect.objectContaining({
        code: 'InvalidArgument',
        message: expect.stringMatching(/CORRAL_EVENT_RETENTION.*no unit/),
      }),
    );
  });
});
