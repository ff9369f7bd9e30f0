/**
 * gRPC status codes as ttrpc carries them (google.rpc.StatusCode.code), and the two mappings between them and
 * Corral's error catalogue (src/errors.ts):
 *
 * | CorralError code   | gRPC code               |
 * |--------------------|-------------------------|
 * | InvalidArgument    | 3 INVALID_ARGUMENT      |
 * | NotFound           | 5 NOT_FOUND             |
 * | AlreadyExists      | 6 ALREADY_EXISTS        |
 * | FailedPrecondition | 9 FAILED_PRECONDITION   |
 * | Timeout            | 4 DEADLINE_EXCEEDED     |
 * | Unavailable        | 14 UNAVAILABLE          |
 * | Cancelled          | 1 CANCELLED             |
 * | ResourceExhausted  | 8 RESOURCE_EXHAUSTED    |
 * | NotImplemented     | 12 UNIMPLEMENTED        |
 * | Internal           | 13 INTERNAL             |
 *
 * Server side ({@link toStatus}): a CorralError maps by the table, a {@link TtrpcError} keeps its own status
 * (so a status relayed from another ttrpc peer passes through), anything else is 2 UNKNOWN with its message.
 * Client side ({@link fromStatus}): the reverse table; codes with no Corral counterpart (UNKNOWN,
 * PERMISSION_DENIED, ABORTED, OUT_OF_RANGE, DATA_LOSS, UNAUTHENTICATED) become Internal. Either way the
 * error is a {@link TtrpcError}, a CorralError that also keeps the gRPC code as `status`.
 */
import { type Code, CorralError } from '../../errors.ts';

export const StatusCode = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

const TO_GRPC: Record<Code, number> = {
  InvalidArgument: StatusCode.INVALID_ARGUMENT,
  NotFound: StatusCode.NOT_FOUND,
  AlreadyExists: StatusCode.ALREADY_EXISTS,
  FailedPrecondition: StatusCode.FAILED_PRECONDITION,
  Timeout: StatusCode.DEADLINE_EXCEEDED,
  Unavailable: StatusCode.UNAVAILABLE,
  Cancelled: StatusCode.CANCELLED,
  ResourceExhausted: StatusCode.RESOURCE_EXHAUSTED,
  NotImplemented: StatusCode.UNIMPLEMENTED,
  Internal: StatusCode.INTERNAL,
};

const FROM_GRPC = new Map<number, Code>(Object.entries(TO_GRPC).map(([c, n]) => [n, c as Code]));

/** A CorralError that came from, or is meant for, a ttrpc status; `status` is the gRPC code. */
export class TtrpcError extends CorralError {
  override name = 'TtrpcError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(FROM_GRPC.get(status) ?? 'Internal', message);
  }
}

/** The status a handler's throw answers with. */
export function toStatus(e: unknown): { code: number; message: string } {
  if (e instanceof TtrpcError) return { code: e.status, message: e.message };
  if (e instanceof CorralError) return { code: TO_GRPC[e.code], message: e.message };
  return { code: StatusCode.UNKNOWN, message: e instanceof Error ? e.message : String(e) };
}

/** The error a non-OK status rejects a call with. */
export const fromStatus = (code: number, message: string): TtrpcError => new TtrpcError(code, message);
