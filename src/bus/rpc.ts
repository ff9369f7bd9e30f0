/**
 * Typed request/reply over NATS with the `{ok, result | error}` envelope and MessagePack.
 * `serve` is the one place that turns bytes into values and errors into replies for every handler.
 */
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { CorralError, ensureError, err, fromWire, type WireError } from '../errors.ts';
import { decode, encode } from './codec.ts';

export type Envelope<T> = { ok: true; result: T } | { ok: false; error: WireError };

export async function request<T>(nc: NatsConnection, subject: string, body: unknown, timeoutMs: number): Promise<T> {
  let msg: Msg;
  try {
    msg = await nc.request(subject, encode(body), { timeout: Math.max(1, timeoutMs) });
  } catch (e) {
    const m = (e as Error).message ?? String(e);
    if (/no responders|503/i.test(m) || (e as Error).name === 'NoRespondersError') throw err.unavailable(`no one serves ${subject}`, e);
    if (/timeout/i.test(m) || (e as Error).name === 'TimeoutError') throw err.timeout(`no reply on ${subject} within ${timeoutMs} ms`, e);
    throw err.unavailable(`request on ${subject} failed: ${m}`, e);
  }
  const env = decode(msg.data) as Envelope<T> | undefined;
  if (!env || typeof env !== 'object' || typeof (env as { ok?: unknown }).ok !== 'boolean') throw err.internal(`malformed reply on ${subject}`);
  if (env.ok) return env.result;
  throw fromWire(env.error);
}

export type Handler = (body: unknown, msg: Msg) => Promise<unknown> | unknown;

export interface ServeOptions {
  queue?: string;
  /** Called with errors that are not CorralErrors (bugs), for logging. */
  onInternal?: (e: unknown, subject: string) => void;
}

/** Serve a subject (wildcards allowed). Each handler's result or thrown error becomes the reply. */
export function serve(nc: NatsConnection, subject: string, handler: Handler, opts: ServeOptions = {}): Subscription {
  return nc.subscribe(subject, {
    queue: opts.queue,
    callback: (e, msg) => {
      if (e) return;
      void (async () => {
        let reply: Envelope<unknown>;
        try {
          const body = decode(msg.data);
          reply = { ok: true, result: await handler(body, msg) };
        } catch (x) {
          if (!(x instanceof CorralError)) opts.onInternal?.(x, msg.subject);
          reply = { ok: false, error: ensureError(x).toWire() };
        }
        if (msg.reply) {
          try { msg.respond(encode(reply)); } catch { /* connection closing: nothing to answer to */ }
        }
      })();
    },
  });
}
