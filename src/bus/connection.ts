/** Connecting to NATS: one place for names, reconnect policy, credentials and the default local URL. */
import { readFileSync, statSync } from 'node:fs';
import { connect, nkeyAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { err } from '../errors.ts';

export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222';

/**
 * The NKEY seed in `file` (`SU...`, what infra/nats/gen-creds.ts writes as `<node>.nk`, mode 0600).
 * @throws InvalidArgument when the file is missing, readable by others, or holds no user seed.
 */
export function readNkeySeed(file: string): Uint8Array {
  let text: string;
  let mode: number;
  try {
    mode = statSync(file).mode;
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw err.invalid(`cannot read credentials file ${file}: ${(e as Error).message}`, e);
  }
  if ((mode & 0o077) !== 0) throw err.invalid(`credentials file ${file} is readable by group or others: chmod 600 it`);
  const seed = text
    .split('\n')
    .map((l) => l.trim())
    .find((l) => /^SU[A-Z2-7]{50,}$/.test(l));
  if (!seed) throw err.invalid(`credentials file ${file} holds no NKEY user seed (a line starting with SU)`);
  return new TextEncoder().encode(seed);
}

/** How often a connection pings its server (see connectNats). */
export const PING_INTERVAL_MS = 2000;

export async function connectNats(
  url: string,
  name: string,
  opts: { timeoutMs?: number; nkeySeedFile?: string; noAsyncTraces?: boolean } = {},
): Promise<NatsConnection> {
  const seed = opts.nkeySeedFile ? readNkeySeed(opts.nkeySeedFile) : undefined;
  try {
    return await connect({
      servers: url.split(','),
      name,
      timeout: opts.timeoutMs ?? 3000,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      // A server cut off without a reset (a partition, a frozen host) is found stale after 4–6 s and the
      // connection moves to another server of the cluster (9 s in all, test/integration/cluster.test.ts);
      // nats.js's default (2 min, 2 out) kept an agent away from its cluster for minutes, and the fleet
      // marks a node lost after 3 s without heartbeats.
      pingInterval: PING_INTERVAL_MS,
      maxPingOut: 2,
      // The agent and the workers pass true: nats.js otherwise captures a stack trace at every request and
      // publish, for the error it may never raise (about 15% of the agent's CPU in a burst of creates,
      // issue 13); errors are told apart by class and code (nats-errors.ts), never by their stack.
      noAsyncTraces: opts.noAsyncTraces ?? false,
      ...(seed ? { authenticator: nkeyAuthenticator(seed) } : {}),
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
  let next = new Promise<void>((r) => {
    wake = r;
  });
  const state = { epoch: 0, lastAt: 0, next: () => next };
  w = state;
  watches.set(nc, w);
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type !== 'reconnect') continue;
      state.epoch++;
      state.lastAt = Date.now();
      const done = wake;
      next = new Promise<void>((r) => {
        wake = r;
      });
      done();
    }
  })().catch(() => {
    // The status iterator ends (it does not throw) when the connection closes; the loop body cannot throw.
  });
  return w;
}
