/**
 * Request/reply over one inbox subscription per connection (`<inbox>.<n>` per request), without nats.js's
 * per-request machinery (a RequestOne with its deferred, and a RequestError made at every reply even when
 * none is raised): what the agent's hot path (event-log appends, worker calls) pays per message (issue 13).
 * It fails as nats.js's request does, with the same error classes (nats-errors.ts tells them apart):
 * TimeoutError past the timeout, NoRespondersError on a 503 status reply, ClosedConnectionError or
 * DrainingConnectionError when the connection is gone (publish throws; pending requests fail on close).
 * The subscription is nats.js's, so it is made again on every reconnect, as nats.js's own inbox is. Requests
 * made in one turn of the event loop are published together at its end (setImmediate), in the order made:
 * one socket write for many, where nats.js writes at each microtask checkpoint.
 */
import { createInbox, errors, headers as newHeaders, type Msg, type MsgHdrs } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { JetStreamApiError, type PubAck } from '@nats-io/jetstream';
import { err } from '../errors.ts';

interface Pending {
  resolve: (m: Msg) => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout;
  subject: string;
}

class ReplyMux {
  private readonly prefix = createInbox();
  private n = 0;
  private readonly pending = new Map<string, Pending>();

  constructor(nc: NatsConnection, onGone: () => void) {
    const sub = nc.subscribe(`${this.prefix}.*`, { callback: (e, m) => (e ? undefined : this.onReply(m)) });
    void sub.closed.then(() => {
      onGone(); // the next request makes a new one
      const e = nc.isClosed() ? new errors.ClosedConnectionError() : new errors.DrainingConnectionError();
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(e);
      }
      this.pending.clear();
    });
  }

  /** Publishes waiting for the end of this turn of the event loop: sent together, in one socket write. */
  private out: { subject: string; data: Uint8Array; reply: string; h?: MsgHdrs; token: string }[] = [];

  request(nc: NatsConnection, subject: string, data: Uint8Array, timeoutMs: number, h?: MsgHdrs): Promise<Msg> {
    const token = String(++this.n);
    return new Promise<Msg>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(token);
        reject(new errors.TimeoutError());
      }, timeoutMs);
      this.pending.set(token, { resolve, reject, timer, subject });
      if (this.out.push({ subject, data, reply: `${this.prefix}.${token}`, h, token }) === 1)
        setImmediate(() => this.send(nc));
    });
  }

  /** Every publish queued this turn, in request order (nats.js writes them to the socket at once). */
  private send(nc: NatsConnection): void {
    const out = this.out;
    this.out = [];
    for (const o of out) {
      try {
        nc.publish(o.subject, o.data, o.h ? { reply: o.reply, headers: o.h } : { reply: o.reply });
      } catch (e) {
        const p = this.pending.get(o.token);
        if (!p) continue;
        clearTimeout(p.timer);
        this.pending.delete(o.token);
        p.reject(e);
      }
    }
  }

  private onReply(m: Msg): void {
    const token = m.subject.slice(this.prefix.length + 1);
    const p = this.pending.get(token);
    if (!p) return; // timed out meanwhile
    this.pending.delete(token);
    clearTimeout(p.timer);
    if (m.data.length === 0 && m.headers?.code === 503) p.reject(new errors.NoRespondersError(p.subject));
    else p.resolve(m);
  }
}

const muxes = new WeakMap<NatsConnection, ReplyMux>();

/** A request on `nc`: resolves with the reply, or fails as nats.js's `nc.request` would (see above). */
export function muxRequest(
  nc: NatsConnection,
  subject: string,
  data: Uint8Array,
  timeoutMs: number,
  h?: MsgHdrs,
): Promise<Msg> {
  if (nc.isClosed()) return Promise.reject(new errors.ClosedConnectionError());
  let mux = muxes.get(nc);
  if (!mux) {
    const made = new ReplyMux(nc, () => muxes.get(nc) === made && muxes.delete(nc));
    muxes.set(nc, made);
    mux = made;
  }
  return mux.request(nc, subject, data, timeoutMs, h);
}

const td = new TextDecoder();

/**
 * A JetStream publish awaiting its PubAck, under `msgId` (Nats-Msg-Id) when given: as nats.js's `js.publish`
 * (its errors: JetStreamApiError with the server's codes; no responders when JetStream is not up), without
 * its per-publish overhead.
 */
export async function jsPublish(
  nc: NatsConnection,
  subject: string,
  body: Uint8Array,
  o: { msgId?: string; timeoutMs: number },
): Promise<PubAck> {
  let h: MsgHdrs | undefined;
  if (o.msgId) {
    h = newHeaders();
    h.set('Nats-Msg-Id', o.msgId);
  }
  const m = await muxRequest(nc, subject, body, o.timeoutMs, h);
  const v = JSON.parse(td.decode(m.data)) as Partial<PubAck> & {
    error?: ConstructorParameters<typeof JetStreamApiError>[0];
  };
  if (v.error) throw new JetStreamApiError(v.error);
  if (!v.stream || typeof v.seq !== 'number') throw err.internal(`not a JetStream ack on ${subject}`);
  return { stream: v.stream, seq: v.seq, duplicate: v.duplicate ?? false, domain: v.domain ?? '' };
}
