/**
 * The durable event log: the JetStream stream CORRAL_EVENTS over `corral.v1.evt.>`.
 * Facts (created, started, exited, deleted, ...) and write-ahead inputs (kind `input`) of every
 * sandbox go here. Appends are acknowledged (the caller awaits the PubAck) and de-duplicated by
 * `Nats-Msg-Id` when the caller gives one.
 */
import { jetstream, jetstreamManager, DiscardPolicy, RetentionPolicy, StorageType, type JetStreamClient } from '@nats-io/jetstream';
import { headers, type NatsConnection } from '@nats-io/transport-node';
import { err } from '../errors.ts';
import { encode } from './codec.ts';
import { EVENTS_STREAM, subjects } from './subjects.ts';

export interface StreamLimits {
  /** @default 1 GiB */
  maxBytes?: number;
  /** @default 1 */
  replicas?: number;
}

export async function ensureEventStream(nc: NatsConnection, limits: StreamLimits = {}): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const cfg = {
    name: EVENTS_STREAM,
    subjects: [subjects.evtAll()],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    max_bytes: limits.maxBytes ?? 1024 ** 3,
    num_replicas: limits.replicas ?? 1,
    duplicate_window: 120_000_000_000, // 2 min in ns
  };
  try {
    await jsm.streams.info(EVENTS_STREAM);
    await jsm.streams.update(EVENTS_STREAM, { subjects: cfg.subjects, max_bytes: cfg.max_bytes, discard: cfg.discard });
  } catch (e) {
    if (!/not found/i.test((e as Error).message)) throw err.unavailable(`JetStream unavailable: ${(e as Error).message}`, e);
    await jsm.streams.add(cfg);
  }
}

export class EventLog {
  private js: JetStreamClient;
  /** Per-sandbox chains keep appends in order without serialising different sandboxes. */
  private chains = new Map<string, Promise<unknown>>();
  constructor(nc: NatsConnection, private node: string) {
    this.js = jetstream(nc);
  }

  /** Append one record; resolves with its stream sequence once JetStream has stored it. */
  append(sandbox: string, kind: string, data: Record<string, unknown>, msgId?: string): Promise<number> {
    const subject = subjects.evt(this.node, sandbox, kind);
    const body = encode({ node: this.node, sandbox, kind, at: Date.now(), ...data });
    const prev = this.chains.get(sandbox) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(async () => {
      const h = msgId ? headers() : undefined;
      if (h && msgId) h.set('Nats-Msg-Id', msgId);
      const ack = await this.js.publish(subject, body, h ? { headers: h, timeout: 5000 } : { timeout: 5000 });
      return ack.seq;
    });
    this.chains.set(sandbox, next);
    void next.finally(() => { if (this.chains.get(sandbox) === next) this.chains.delete(sandbox); }).catch(() => {});
    return next.catch((e) => { throw err.unavailable(`event log append failed: ${(e as Error).message}`, e); });
  }
}
