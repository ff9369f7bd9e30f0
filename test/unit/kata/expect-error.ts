/** Assert that a call fails with a CorralError of a given code and (exact or matching) message. */
import { expect } from 'vitest';
import { type Code, CorralError } from '../../../src/errors.ts';

export async function expectError(run: () => unknown, code: Code, message?: string | RegExp): Promise<CorralError> {
  let caught: unknown;
  try {
    await run();
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected a CorralError').toBeInstanceOf(CorralError);
  const e = caught as CorralError;
  if (typeof message === 'string') expect(e.message).toBe(message);
  else if (message) expect(e.message).toMatch(message);
  expect(e.code).toBe(code);
  return e;
}
