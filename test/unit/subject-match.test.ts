/** The subject matcher a read of the whole event stream keeps its filter's records with (eventlog-reader.ts). */
import { describe, expect, it } from 'vitest';
import { subjectMatcher } from '../../src/bus/eventlog-reader.ts';

describe('subjectMatcher', () => {
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
    ['corral.v1.evt.n+1.*.>', 'corral.v1.evt.n+1.s.x', true],
    ['corral.v1.evt.n+1.*.>', 'corral.v1.evt.nn1.s.x', false],
    ['corral.v1.evt.n1.*.>', 'corral.v1.evtXn1.s.x', false],
    ['>', 'a', true],
    ['corral.v1.evt.*.s1.>', 'corral.v1.evt..s1.x', false],
    ['corral.v1.evt.>', 'corral.v1.evt.', false],
  ])('%s against %s: %s', (filter, subject, want) => {
    expect(subjectMatcher(filter)(subject)).toBe(want);
  });
});
