/**
 * The one request-serving loop every Corral service runs on (the Task API, each worker, the fleet
 * controller): subscribe to a subject (a trailing `*` serves a family of verbs), decode each body
 * once (MessagePack), run the handler, and answer with the `{ok, result | error}` envelope. A thrown
 * CorralError becomes its coded reply; anything else is Internal and goes to `onInternal` (a bug, to
 * be logged). A handler that answers later (a machine will reply) returns {@link LATER} and calls
 * `reply` itself, exactly once. Each request runs in a server span (trace-headers.ts), ended by its answer.
 */
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { CorralError, ensureError } from '../errors.ts';
import { decode, encode } from './codec.ts';
import type { Envelope } from './envelope.ts';
import { answered, servedIn } from './trace-headers.ts';

/** Returned by a handler that will call `reply` later. */
export const LATER: unique symbol = Symbol('later');

export interface Request {
  subject: string;
  /** The last token of the subject when serving `…*` (the verb or op); else the whole subject. */
  verb: string;
  msg: Msg;
  /** Answer the request (idempotent per request: the first answer wins). */
  reply(env: Envelope<unknown>): void;
}

export type RequestHandler = (body: unknown, req: Request) => unknown;

export interface ServeOptions {
  queue?: string;
  /** Errors that are not CorralErrors (bugs), for logging. */
  onInternal?: (e: unknown, subject: string) => void;
}

/** Answer `msg` with `env`; a requester that has gone (or a closing connection) gets nothing. */
export function respond(msg: Msg, env: Envelope<unknown>): void {
  answered(msg, env);
  if (!msg.reply) return;
  try {
    msg.respond(encode(env));
  } catch {
    // the connection is closing or the requester is gone: nobody is left to answer
  }
}

export function serve(
  nc: NatsConnection,
  subject: string,
  handler: RequestHandler,
  o: ServeOptions = {},
): Subscription {
  const family = subject.endsWith('.*') ? subject.slice(0, -1) : undefined;
  return nc.subscribe(subject, {
    queue: o.queue,
    callback: (e, msg) => {
      if (e) return; // the subscription is closing: nothing to serve
      let answered = false;
      const req: Request = {
        subject: msg.subject,
        verb: family ? msg.subject.slice(family.length) : msg.subject,
        msg,
        reply: (env) => {
          if (answered) return;
          answered = true;
          respond(msg, env);
        },
      };
      const handle = async () => {
        try {
          const result = await handler(decode(msg.data), req);
          if (result !== LATER) req.reply({ ok: true, result });
        } catch (x) {
          if (!(x instanceof CorralError)) o.onInternal?.(x, msg.subject);
          req.reply({ ok: false, error: ensureError(x).toWire() });
        }
      };
      servedIn(msg, () => void handle());
    },
  });
}
