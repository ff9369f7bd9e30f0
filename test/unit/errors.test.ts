import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CODES, type CorralError, ensureError, err } from '../../src/errors.ts';

describe('error catalogue', () => {
  const doc = readFileSync(new URL('../../docs/api.md', import.meta.url), 'utf8');
  it('documents every code in docs/api.md, with its retryable flag', () => {
    for (const [code, { retryable }] of Object.entries(CODES)) {
      expect(doc).toContain(`| \`${code}\` | ${retryable ? 'yes' : 'no'} |`);
    }
  });
  it('has one shorthand per code', () => {
    const made = new Set(Object.values(err).map((f) => (f as (m: string) => CorralError)('x').code));
    expect([...made].sort()).toEqual(Object.keys(CODES).sort());
  });
  it('turns anything thrown into a CorralError, keeping wire errors', () => {
    expect(ensureError(new Error('boom'))).toMatchObject({ code: 'Internal', message: 'boom' });
    expect(ensureError({ code: 'NotFound', message: 'x', retryable: false })).toMatchObject({
      code: 'NotFound',
      message: 'x',
    });
    expect(ensureError('text')).toMatchObject({ code: 'Internal', message: 'text' });
  });
});
