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
