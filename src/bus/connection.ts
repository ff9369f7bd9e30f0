/** Connecting to NATS: one place for names, reconnect policy and the default local URL. */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { err } from '../errors.ts';

export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222';

export async function connectNats(url: string, name: string, opts: { timeoutMs?: number } = {}): Promise<NatsConnection> {
  try {
    return await connect({
      servers: url.split(','),
      name,
      timeout: opts.timeoutMs ?? 3000,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    });
  } catch (e) {
    throw err.unavailable(`cannot reach NATS at ${url}: ${(e as Error).message}`, e);
  }
}

/** Reconnects of one connection, watched once per connection (requests and appends share it). */
export interface ReconnectWatch {
  /** How many times the connection has come back. */
  readonly epoch: number;
  /** When it last came back (epoch ms; 0: never). */
  readonly lastAt: number;
  /** Resolves on the next reconnect. */
  next(): Promise<void>;
}

const watches = new WeakMap<NatsConnection, ReconnectWatch>();

/**
 * nats.js drops what it had buffered for a broken connection when it reconnects, and a reply published
 * while the server was gone is gone: anything waiting across a reconnect may wait for nothing. This
 * tells such waiters (rpc.ts `request`, eventlog.ts `append`) to send again.
 */
export function reconnectWatch(nc: NatsConnection): ReconnectWatch {
  let w = watches.get(nc);
  if (w) return w;
  let wake!: () => void;
  let next = new Promise<void>((r) => { wake = r; });
  const state = { epoch: 0, lastAt: 0, next: () => next };
  w = state;
  watches.set(nc, w);
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type !== 'reconnect') continue;
      state.epoch++;
      state.lastAt = Date.now();
      const done = wake;
      next = new Promise<void>((r) => { wake = r; });
      done();
    }
  })().catch(() => {});
  return w;
}
