/**
 * Typed request/reply over NATS with the `{ok, result | error}` envelope and MessagePack, carrying the
 * active trace context in its headers (trace-headers.ts). The serving side (one loop for every service)
 * is serve.ts.
 */
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { CorralError, err, fromWire } from '../errors.ts';
import { decode, encode } from './codec.ts';
import { reconnectWatch } from './connection.ts';
import { isNatsTimeout, isNoResponders } from './nats-errors.ts';
import { muxRequest } from './reply-mux.ts';
import { traceHeaders } from './trace-headers.ts';

import type { Envelope } from './envelope.ts';

export type { Envelope } from './envelope.ts';

export interface RequestOptions {
  /**
   * Send the request again, unchanged, when the connection comes back while the reply is awaited (a
   * request buffered for a dead server, or a reply published while it was gone, is dropped by nats.js),
   * and retry "no responders" for a few seconds after a reconnect (the server is back before its
   * subscribers are). Only for idempotent requests. @default true when the body carries an `opId`
   * (the Worker API's idempotency key: a repeated opId gets the first outcome) or a `requestId` (the
   * Task API's)
   */
  resendOnReconnect?: boolean;
  /**
   * The caller stopped waiting (the worker died, the machine left the state): stop sending. A request
   * re-sent after its op was rolled back would do it again, with nobody left to undo it.
   */
  signal?: AbortSignal;
  /**
   * "No responders" is asked again for this long (from the first one) before it stands: the responder
   * may be reconnecting to another server of the cluster, or restarting. @default 0
   */
  respondersGraceMs?: number;
  /** Re-send an unanswered idempotent request this often. @default 10 s ({@link RESEND_EVERY_MS}) */
  resendEveryMs?: number;
}

/** After a reconnect, "no responders" is retried this long: subscribers resubscribe on their own reconnect. */
const RESUBSCRIBE_GRACE_MS = 5_000;
/**
 * An idempotent request still unanswered after this long is sent again: a reply lost while the
 * *responder's* connection was down (which this side cannot see) costs at most this much. The worker
 * joins the repeat to the op in flight, or answers it from its journal.
 */
const RESEND_EVERY_MS = 10_000;

const isIdempotent = (body: unknown) =>
  !!body &&
  typeof body === 'object' &&
  (typeof (body as { opId?: unknown }).opId === 'string' ||
    typeof (body as { requestId?: unknown }).requestId === 'string');

/**
 * A failed NATS request → the catalogue, by the client's error classes: no responders → Unavailable,
 * a timeout → Timeout, anything else (connection closed, permission denied, ...) → Unavailable. A
 * CorralError thrown on the way (Cancelled) keeps its code.
 */
export function requestError(e: unknown, subject: string, timeoutMs: number): CorralError {
  if (e instanceof CorralError) return e;
  if (isNoResponders(e)) return err.unavailable(`no one serves ${subject}`, e);
  if (isNatsTimeout(e)) return err.timeout(`no reply on ${subject} within ${timeoutMs} ms`, e);
  return err.unavailable(`request on ${subject} failed: ${e instanceof Error ? e.message : String(e)}`, e);
}

export async function request<T>(
  nc: NatsConnection,
  subject: string,
  body: unknown,
  timeoutMs: number,
  opts: RequestOptions = {},
): Promise<T> {
  const data = encode(body);
  const headers = traceHeaders(); // the active span's W3C context, when tracing is on
  const resend = opts.resendOnReconnect ?? isIdempotent(body);
  const until = Date.now() + Math.max(1, timeoutMs);
  const rc = resend ? reconnectWatch(nc) : undefined;
  let msg: Msg;
  let firstNoResponders: number | undefined;
  // A copy went out and got no answer (re-sent on a tick or a reconnect): a responder may hold it. "No
  // responders" to a later copy then says only that it is gone now (killed, restarting), not that it
  // never took the request: that stays silence, a Timeout at the deadline, never a refusal, or a caller
  // would do elsewhere what that responder may still do (a fleet create placed on two nodes).
  let mayHoldIt = false;
  const aborted = opts.signal
    ? new Promise<'aborted'>((r) => opts.signal!.addEventListener('abort', () => r('aborted'), { once: true }))
    : undefined;
  for (;;) {
    if (opts.signal?.aborted) throw err.cancelled(`request on ${subject} abandoned`);
    const left = Math.max(1, until - Date.now());
    const p = muxRequest(nc, subject, data, left, headers);
    try {
      if (!rc) {
        msg = await p;
        break;
      }
      const epoch = rc.epoch;
      p.catch(() => {
        // Abandoned when the connection comes back first; otherwise awaited (and its error handled) below.
      });
      let timer: NodeJS.Timeout | undefined;
      const tick = new Promise<'tick'>((r) => {
        timer = setTimeout(() => r('tick'), opts.resendEveryMs ?? RESEND_EVERY_MS);
      });
      const r = await Promise.race([
        p.then((m) => ({ m })),
        rc.next().then(() => undefined),
        tick,
        ...(aborted ? [aborted] : []),
      ]).finally(() => clearTimeout(timer));
      if (r === 'aborted') throw err.cancelled(`request on ${subject} abandoned`);
      if (r && r !== 'tick') {
        msg = r.m;
        break;
      }
      // The connection came back, or the responder was silent too long: send it again.
      if ((r === 'tick' || rc.epoch !== epoch) && until - Date.now() > 200) {
        mayHoldIt = true;
        continue;
      }
      msg = await p;
      break;
    } catch (e) {
      if (isNoResponders(e) && mayHoldIt) {
        if (until - Date.now() <= 200)
          throw err.timeout(`no reply on ${subject} within ${timeoutMs} ms; its responder went away with it`, e);
        await new Promise((r) => setTimeout(r, 250));
        continue;
      }
      if (isNoResponders(e) && until - Date.now() > 200) {
        const now = Date.now();
        firstNoResponders ??= now;
        if ((rc && now - rc.lastAt < RESUBSCRIBE_GRACE_MS) || now - firstNoResponders < (opts.respondersGraceMs ?? 0)) {
          await new Promise((r) => setTimeout(r, 100));
          continue;
        }
      }
      throw requestError(e, subject, timeoutMs);
    }
  }
  const env = decode(msg.data) as Envelope<T> | undefined;
  if (!env || typeof env !== 'object' || typeof (env as { ok?: unknown }).ok !== 'boolean')
    throw err.internal(`malformed reply on ${subject}`);
  if (env.ok) return env.result;
  throw fromWire(env.error);
}
