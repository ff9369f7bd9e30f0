/**
 * The one error catalogue. Every reply on the wire carries `{code, message, retryable}` with `code`
 * from {@link CODES}; clients branch on codes, never on message text (architecture.md, "The wire").
 * `docs/api.md` documents each code; `test/unit/errors.test.ts` keeps the two in sync.
 */
export const CODES = {
  InvalidArgument: { retryable: false, doc: 'The request is malformed or violates a rule of the create path.' },
  NotFound: { retryable: false, doc: 'No task, sandbox, file or operation by that name.' },
  AlreadyExists: { retryable: false, doc: 'A task with that id exists already.' },
  FailedPrecondition: {
    retryable: false,
    doc: 'The command is not accepted in the current state; the message names the state.',
  },
  Timeout: { retryable: true, doc: 'A deadline passed before the step finished; the step was rolled back.' },
  Unavailable: { retryable: true, doc: 'A worker or NATS did not answer; try again.' },
  Cancelled: { retryable: false, doc: 'The operation was cancelled (agent shutting down, caller gave up).' },
  ResourceExhausted: { retryable: true, doc: 'A limit was reached (payload size, capacity).' },
  NotImplemented: { retryable: false, doc: 'The verb exists in the API but this node does not implement it.' },
  Internal: { retryable: false, doc: 'A bug or an unexpected failure of a side effect; the message says which.' },
} as const;

export type Code = keyof typeof CODES;

export interface WireError {
  code: Code;
  message: string;
  retryable: boolean;
}

/** The only error class Corral throws on purpose. `cause` keeps the underlying error for logs. */
export class CorralError extends Error {
  override name = 'CorralError';
  readonly retryable: boolean;
  /**
   * True when a peer's reply carried this error (fromWire): the peer decided, so e.g. a Timeout means
   * its step timed out and it finished handling the request; false for errors raised here, among them
   * the bus's own "no reply in time", after which the peer may still be working.
   */
  readonly answered: boolean;
  constructor(
    readonly code: Code,
    message: string,
    options?: { cause?: unknown; retryable?: boolean; answered?: boolean },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.retryable = options?.retryable ?? CODES[code].retryable;
    this.answered = options?.answered ?? false;
  }
  toWire(): WireError {
    return { code: this.code, message: this.message, retryable: this.retryable };
  }
}

export const isCode = (v: unknown): v is Code => typeof v === 'string' && Object.hasOwn(CODES, v);

/** Shorthands, one per code: `err.invalid('Missing bundle path')`. */
export const err = {
  invalid: (m: string, cause?: unknown) => new CorralError('InvalidArgument', m, { cause }),
  notFound: (m: string, cause?: unknown) => new CorralError('NotFound', m, { cause }),
  exists: (m: string) => new CorralError('AlreadyExists', m),
  precondition: (m: string) => new CorralError('FailedPrecondition', m),
  timeout: (m: string, cause?: unknown) => new CorralError('Timeout', m, { cause }),
  unavailable: (m: string, cause?: unknown) => new CorralError('Unavailable', m, { cause }),
  cancelled: (m: string) => new CorralError('Cancelled', m),
  exhausted: (m: string) => new CorralError('ResourceExhausted', m),
  notImplemented: (m: string) => new CorralError('NotImplemented', m),
  internal: (m: string, cause?: unknown) => new CorralError('Internal', m, { cause }),
};

/** Anything thrown → a CorralError. Unknown errors become Internal with their message kept. */
export function ensureError(e: unknown): CorralError {
  if (e instanceof CorralError) return e;
  if (e && typeof e === 'object' && 'code' in e && isCode(e.code)) {
    const w = e as Partial<WireError> & { code: Code };
    return new CorralError(w.code, String(w.message ?? w.code), { retryable: w.retryable });
  }
  const msg = e instanceof Error ? e.message : String(e);
  return new CorralError('Internal', msg, { cause: e });
}

export const fromWire = (w: WireError): CorralError =>
  new CorralError(isCode(w.code) ? w.code : 'Internal', w.message, { retryable: w.retryable, answered: true });

/** The one normaliser to the wire shape (what machines keep in their context and replies carry). */
export const toWireError = (e: unknown): WireError => ensureError(e).toWire();
