/**
 * Idempotency keys for the Task API's changing verbs. A request carrying `requestId` may be sent
 * again, unchanged (its reply was lost with a NATS server, or the caller reconnected and cannot tell);
 * a repeat joins the request in flight, or gets the first request's answer while it is remembered.
 * Without a `requestId` every request is new (containerd's semantics: a second create is AlreadyExists).
 *
 * Keys are `<task id>/<requestId>`; answers are remembered for `ttlMs` (at most `max` of them).
 */
import type { Msg } from '@nats-io/transport-node';
import { err } from '../errors.ts';
import type { Envelope } from '../bus/rpc.ts';

/** Answers one copy of a request (`M`: its NATS message, or the simulator's stand-in). */
type Answer<M> = (msg: M, env: Envelope<unknown>) => void;

/** `<task id>/<requestId>` of a request body, or undefined when it carries none. Malformed ids are InvalidArgument. */
export function requestKey(body: unknown): string | undefined {
  if (!body || typeof body !== 'object') return undefined;
  const { id, requestId } = body as { id?: unknown; requestId?: unknown };
  if (requestId === undefined || requestId === null) return undefined;
  if (typeof requestId !== 'string' || requestId.length === 0 || requestId.length > 128)
    throw err.invalid('requestId must be a string of 1 to 128 characters');
  return typeof id === 'string' ? `${id}/${requestId}` : undefined;
}

export class RequestLedger<M = Msg> {
  private readonly inflight = new Map<string, M[]>();
  private readonly done = new Map<string, { env: Envelope<unknown>; at: number }>();

  constructor(
    private readonly answer: Answer<M>,
    private readonly ttlMs = 10 * 60_000,
    private readonly max = 10_000,
  ) {}

  /**
   * A request arrives: true when it is a repeat (answered now from memory, or joined to the one in
   * flight); false when it is new and the caller must handle it (it is in flight from now on).
   */
  admit(key: string | undefined, msg: M | undefined): boolean {
    if (key === undefined) return false;
    const d = this.done.get(key);
    if (d && Date.now() - d.at <= this.ttlMs) {
      if (msg) this.answer(msg, d.env);
      return true;
    }
    const joined = this.inflight.get(key);
    if (joined) {
      if (msg) joined.push(msg);
      return true;
    }
    this.inflight.set(key, msg ? [msg] : []);
    return false;
  }

  /**
   * The request's answer: every waiter gets it, and repeats get it from now on, errors too (a copy
   * still on its way after an `Unavailable` answer must not do the work after all; to try again, a
   * caller sends a new request with a new requestId).
   */
  settle(key: string, env: Envelope<unknown>): void {
    const waiters = this.inflight.get(key) ?? [];
    this.inflight.delete(key);
    this.done.delete(key);
    this.done.set(key, { env, at: Date.now() });
    this.prune();
    for (const m of waiters) this.answer(m, env);
  }

  get size(): { inflight: number; done: number } {
    return { inflight: this.inflight.size, done: this.done.size };
  }

  private prune(): void {
    const cut = Date.now() - this.ttlMs;
    for (const [k, v] of this.done) {
      if (this.done.size <= this.max && v.at >= cut) break; // insertion order = age order
      this.done.delete(k);
    }
  }
}
