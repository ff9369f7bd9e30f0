import { describe, expect, it } from 'vitest';
import { parseBool, parseInt64, parseUint } from '../../../src/kata/strconv.ts';

describe('Go strconv', () => {
  it.each(['1', 't', 'T', 'TRUE', 'true', 'True'])('ParseBool(%j) = true', (s) => expect(parseBool(s)).toBe(true));
  it.each(['0', 'f', 'F', 'FALSE', 'false', 'False'])('ParseBool(%j) = false', (s) => expect(parseBool(s)).toBe(false));
  it.each(['', 'yes', 'tRUE', ' true', '2', 'on'])('ParseBool(%j) fails', (s) => expect(parseBool(s)).toBeUndefined());

  it.each([
    ['0', 0n],
    ['007', 7n],
    ['18446744073709551615', 18446744073709551615n],
  ])('ParseUint(%j) = %s', (s, v) => expect(parseUint(s)).toBe(v));
  it.each(['', '-1', '+1', '1.0', '0x10', '1_000', ' 1', '18446744073709551616'])('ParseUint(%j) fails', (s) =>
    expect(parseUint(s)).toBeUndefined(),
  );

  it.each([
    ['-1', -1n],
    ['+5', 5n],
    ['9223372036854775807', 9223372036854775807n],
    ['-9223372036854775808', -9223372036854775808n],
  ])('ParseInt(%j) = %s', (s, v) => expect(parseInt64(s)).toBe(v));
  it.each(['', '-', '1e3', '9223372036854775808', '-9223372036854775809', 'spaghetti'])('ParseInt(%j) fails', (s) =>
    expect(parseInt64(s)).toBeUndefined(),
  );
});
