/**
 * What a NATS client error means, read from its class and codes, never from its message text (nats.js v3
 * has precise error classes for exactly this; its messages are for people and may change).
 *
 * - core request: `TimeoutError` (no reply in time); `RequestError` whose `isNoResponders()` is true, or
 *   a bare `NoRespondersError` (nobody subscribes); `ClosedConnectionError`, `DrainingConnectionError`.
 * - JetStream: `JetStreamApiError` with the server's API code (`JetStreamApiCodes`: StreamNotFound,
 *   ConsumerNotFound, StreamWrongLastSequence, ...) and HTTP-like `status` (503: JetStream is not
 *   ready); `JetStreamNotEnabled` wraps a no-responders `RequestError` as its `cause`.
 *
 * Wrappers keep the original as `cause`, so each test looks along the cause chain.
 */
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import { errors } from '@nats-io/transport-node';

/** `e` and its causes, outermost first (at most 8: a cause cycle must not hang us). */
function causes(e: unknown): unknown[] {
  const out: unknown[] = [];
  for (let x = e; x !== undefined && x !== null && out.length < 8; x = (x as { cause?: unknown }).cause) {
    out.push(x);
    if (typeof x !== 'object') break;
  }
  return out;
}

/** A core request (or a publish awaiting its ack) got no reply within its timeout. */
export const isNatsTimeout = (e: unknown): boolean => causes(e).some((x) => x instanceof errors.TimeoutError);

/** Nobody subscribes to the subject (the server answered 503 "no responders"). */
export const isNoResponders = (e: unknown): boolean =>
  causes(e).some(
    (x) => x instanceof errors.NoRespondersError || (x instanceof errors.RequestError && x.isNoResponders()),
  );

/** The connection is closed or draining: nothing sent on it will be answered. */
export const isConnectionClosed = (e: unknown): boolean =>
  causes(e).some((x) => x instanceof errors.ClosedConnectionError || x instanceof errors.DrainingConnectionError);

/** The JetStream API error code (`err_code`, e.g. 10059 stream not found), if `e` is one. */
export function jetStreamCode(e: unknown): number | undefined {
  const x = causes(e).find((c) => c instanceof JetStreamApiError);
  return x instanceof JetStreamApiError ? x.code : undefined;
}

/** The JetStream API error's HTTP-like status (503: JetStream temporarily unavailable), if `e` is one. */
export function jetStreamStatus(e: unknown): number | undefined {
  const x = causes(e).find((c) => c instanceof JetStreamApiError);
  return x instanceof JetStreamApiError ? x.status : undefined;
}

export const isStreamNotFound = (e: unknown): boolean => jetStreamCode(e) === JetStreamApiCodes.StreamNotFound;
export const isConsumerNotFound = (e: unknown): boolean => jetStreamCode(e) === JetStreamApiCodes.ConsumerNotFound;

/** A KV `update`/`create` lost a race: the key's revision is not the one the write expected. */
export function isWrongLastSequence(e: unknown): boolean {
  const c = jetStreamCode(e);
  return c === JetStreamApiCodes.StreamWrongLastSequence || c === JetStreamApiCodes.StreamWrongLastSequenceUnknown;
}
