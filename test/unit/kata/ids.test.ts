import { describe, expect, it } from 'vitest';
import { verifyContainerId, MAX_ID_LENGTH } from '../../../src/kata/ids.ts';
import { expectError } from './expect-error.ts';

const PATTERN_ERROR = 'invalid container/sandbox ID (should match "^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")';

describe('verifyContainerId (§1.1 step 3)', () => {
  it('blank id → "ID cannot be blank"', async () => {
    await expectError(() => verifyContainerId(''), 'InvalidArgument', 'ID cannot be blank');
  });

  it.each(['ab', 'a1', '0abc', 'A.b_c-d', 'x'.repeat(MAX_ID_LENGTH), 'pod.sandbox-1'])('accepts %j', (id) => {
    expect(verifyContainerId(id)).toBe(id);
  });

  it.each([
    ['a', 'one character (the pattern needs two)'],
    ['-ab', 'leading dash'],
    ['.ab', 'leading dot'],
    ['_ab', 'leading underscore'],
    ['a/b', 'slash'],
    ['a b', 'space'],
    ['ab\n', 'trailing newline'],
    ['ab:c', 'colon'],
    ['ab*', 'wildcard'],
    ['é1', 'non-ASCII'],
  ])('rejects %j (%s) with the exact pattern message', async (id) => {
    await expectError(() => verifyContainerId(id), 'InvalidArgument', PATTERN_ERROR);
  });

  it('Corral: rejects ids longer than 128 characters', async () => {
    await expectError(
      () => verifyContainerId('x'.repeat(MAX_ID_LENGTH + 1)),
      'InvalidArgument',
      'invalid container/sandbox ID (longer than 128 characters)',
    );
  });
});
