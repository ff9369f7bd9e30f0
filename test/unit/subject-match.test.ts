/** The subject matcher a read of the whole event stream keeps its filter's records with (eventlog-reader.ts). */
import { describe, expect, it } from 'vitest';
import { subjectMatches } from '../../src/bus/eventlog-reader.ts';

describe('subjectMatches', () => {
  it.each([
    ['corral.v1.evt.n1.*.>', 'corral.v1.evt.n1.s1.created', true],
    ['corral.v1.evt.n1.*.>', 'corral.v1.evt.n10.s1.created', false],
    ['corral.v1.evt.n1.*.>', 'corral.v1.evt.n1.s1', false],
    ['corral.v1.evt.*.s1.>', 'corral.v1.evt.n2.s1.state', true],
    ['corral.v1.evt.*.s1.>', 'corral.v1.evt.n2.s10.state', false],
    ['corral.v1.evt.*.*.deleted', 'corral.v1.evt.n.s.deleted', true],
    ['corral.v1.evt.*.*.deleted', 'corral.v1.evt.n.s.deleted.x', false],
    ['corral.v1.evt.>', 'corral.v1.evt.n', true],
    ['corral.v1.evt.>', 'corral.v1.evt', false],
  ])('%s against %s: %s', (filter, subject, want) => {
    expect(subjectMatches(filter, subject)).toBe(want);
  });
});
