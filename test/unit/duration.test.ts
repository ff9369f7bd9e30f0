import { describe, expect, it } from 'vitest';
import { matchDuration, parseDuration } from '../../src/util/duration.ts';
import { duration, parse } from '../../src/cli/args.ts';
import { parseSince } from '../../src/cli/commands/events.ts';

const DAY = 86_400_000;

describe('parseDuration: one rule for every duration flag and variable', () => {
  it.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['2m', 120_000],
    ['90m', 5_400_000],
    ['1h', 3_600_000],
    ['36h', 36 * 3_600_000],
    ['7d', 7 * DAY],
    ['1.5d', 1.5 * DAY],
    ['0.5s', 500],
    ['3600s', 3_600_000],
    ['0', 0],
    ['0s', 0],
    [' 30s ', 30_000],
  ])('%j is %d ms', (v, ms) => {
    expect(parseDuration(v, '--timeout')).toBe(ms);
  });

  it.each([
    ['', /--timeout: not a duration: ""/],
    ['30', /--timeout: "30" has no unit; write 30s/],
    ['2', /--timeout: "2" has no unit/],
    ['1.5', /--timeout: "1.5" has no unit/],
    ['-1s', /not a duration: "-1s"/],
    ['1w', /not a duration: "1w"/],
    ['7 days', /not a duration/],
    ['week', /not a duration/],
    ['1h30m', /not a duration/],
    ['1e3ms', /not a duration/],
    ['Infinitys', /not a duration/],
    ['30S', /not a duration/],
    ['.5s', /not a duration/],
  ])('%j is InvalidArgument naming the flag', (v, msg) => {
    expect(() => parseDuration(v, '--timeout')).toThrowError(
      expect.objectContaining({ code: 'InvalidArgument', message: expect.stringMatching(msg) }),
    );
  });

  it('an absent value is the default when one is given, else InvalidArgument naming the flag', () => {
    expect(parseDuration(undefined, '--grace', 10_000)).toBe(10_000);
    expect(() => parseDuration(undefined as unknown as string, '--grace')).toThrowError(
      expect.objectContaining({ code: 'InvalidArgument', message: expect.stringMatching(/^--grace: /) }),
    );
  });

  it('matchDuration never throws', () => {
    expect(matchDuration('10m')).toBe(600_000);
    expect(matchDuration('10')).toBeUndefined();
    expect(matchDuration('x')).toBeUndefined();
  });
});

describe('the CLI and --since use the same rule', () => {
  const opts = { grace: { type: 'string' }, 'lost-after': { type: 'string' } } as const;
  it('duration(p, flag, default) names the flag in its error', () => {
    const p = parse(['--timeout', '2m', '--lost-after', '3'], opts);
    expect(duration(p, 'timeout', 1)).toBe(120_000);
    expect(duration(p, 'grace', 10_000)).toBe(10_000);
    expect(() => duration(p, 'lost-after', 3000)).toThrowError(
      expect.objectContaining({
        code: 'InvalidArgument',
        message: expect.stringMatching(/^--lost-after: "3" has no unit/),
      }),
    );
  });
  it('--since: digits are a sequence, a duration is that long ago', () => {
    expect(parseSince('30', 1_000_000)).toEqual({ sinceSeq: 30 });
    expect(parseSince('30s', 1_000_000)).toEqual({ sinceTime: 970_000 });
    expect(parseSince('1d', 2 * DAY)).toEqual({ sinceTime: DAY });
  });
});
