import { describe, expect, it } from 'vitest';
import { encode } from '../../src/bus/codec.ts';
import { filterSubject, toRecord, toRecords } from '../../src/bus/eventlog-reader.ts';

describe('the event-log reader: filters and decoding', () => {
  it.each([
    [{}, 'corral.v1.evt.>'],
    [{ node: 'n1' }, 'corral.v1.evt.n1.*.>'],
    [{ sandbox: 'web' }, 'corral.v1.evt.*.web.>'],
    [{ sandbox: 'a.b' }, 'corral.v1.evt.*.a~b.>'],
    [{ node: 'n1', sandbox: 'a.b' }, 'corral.v1.evt.n1.a~b.>'],
    [{ kind: 'deleted' }, 'corral.v1.evt.*.*.deleted'],
    [{ node: 'n1', kind: 'rolledBack' }, 'corral.v1.evt.n1.*.rolledBack'],
  ])('%j reads %s', (f, subject) => {
    expect(filterSubject(f)).toBe(subject);
  });

  it.each([{ node: 'a.b' }, { node: '>' }, { sandbox: 'a b' }, { sandbox: '>' }, { kind: '*' }])(
    '%j cannot widen or break the filter: InvalidArgument',
    (f) => {
      expect(() => filterSubject(f)).toThrowError(expect.objectContaining({ code: 'InvalidArgument' }));
    },
  );

  it('a record is its body plus sequence and subject', () => {
    const data = encode({ node: 'n1', sandbox: 's', kind: 'created', at: 5 });
    expect(toRecord(7, 'corral.v1.evt.n1.s.created', data)).toEqual({
      node: 'n1',
      sandbox: 's',
      kind: 'created',
      at: 5,
      seq: 7,
      subject: 'corral.v1.evt.n1.s.created',
    });
  });

  it('a shared message is its records, each with the subject it would have alone and the message sequence', () => {
    const a = { node: 'n1', sandbox: 'a.b', kind: 'state', at: 5, value: 'mounting' };
    const b = { node: 'n1', sandbox: 'a.b', kind: 'input', at: 6, effect: 'bind' };
    const data = encode([a, b]);
    const all = toRecords(9, 'corral.v1.evt.n1.a~b.batch', data);
    expect(all).toEqual([
      { ...a, seq: 9, subject: 'corral.v1.evt.n1.a~b.state' },
      { ...b, seq: 9, subject: 'corral.v1.evt.n1.a~b.input' },
    ]);
    const inputs = toRecords(9, 'corral.v1.evt.n1.a~b.batch', data, (s) => s.endsWith('.input'));
    expect(inputs.map((r) => r.kind)).toEqual(['input']);
    expect(toRecords(3, 'corral.v1.evt.n1.s.created', encode(a), () => false)).toEqual([]);
  });
});
