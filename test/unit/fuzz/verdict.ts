/**
 * The verdict every fuzz property asserts on a parser's answer: a value, or a CorralError with one of
 * the expected codes (InvalidArgument unless told) whose message names the field. Anything else thrown
 * (a TypeError, a RangeError, a plain Error, a wrong code, a message naming nothing) fails the property,
 * and fast-check prints the input that did it.
 */
import { type Code, CorralError } from '../../../src/errors.ts';

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: CorralError };

export interface Expected {
  /** @default ['InvalidArgument'] */
  codes?: readonly Code[];
  /** The message must contain one of these (case-insensitive); path segments that are not strings are skipped. */
  names?: readonly (string | number)[];
}

const show = (e: unknown) =>
  e instanceof Error ? `${e.constructor.name}: ${e.message}` : `a thrown ${typeof e} ${String(e)}`;

/** `e` when it is the refusal `o` allows; otherwise throws (the property fails with why). */
export function refusal(e: unknown, o: Expected = {}): CorralError {
  if (!(e instanceof CorralError)) throw new Error(`expected a CorralError, got ${show(e)}`, { cause: e });
  const codes = o.codes ?? ['InvalidArgument'];
  if (!codes.includes(e.code)) throw new Error(`expected ${codes.join(' or ')}, got ${e.code}: ${e.message}`);
  // `devices` is named by "device" too (a plural field's element).
  const names = (o.names ?? [])
    .filter((n): n is string => typeof n === 'string' && n !== '')
    .map((n) => n.toLowerCase().replace(/(?<=..)s$/, ''));
  const msg = e.message.toLowerCase();
  if (names.length > 0 && !names.some((n) => msg.includes(n)))
    throw new Error(`${e.code} ${JSON.stringify(e.message)} names none of ${JSON.stringify(names)}`);
  return e;
}

/** Run a synchronous parser and judge its answer. */
export function verdict<T>(run: () => T, o: Expected = {}): Outcome<T> {
  try {
    return { ok: true, value: run() };
  } catch (e) {
    return { ok: false, error: refusal(e, o) };
  }
}

/** Run an async handler and judge its answer. */
export async function settle<T>(run: () => Promise<T> | T, o: Expected = {}): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await run() };
  } catch (e) {
    return { ok: false, error: refusal(e, o) };
  }
}
