/**
 * The agent's feed of worker facts (process exits, VM deaths): a durable JetStream consumer on
 * `corral.v1.evt.<node>.*.worker`, acknowledged after the agent has taken each one in. A fact that
 * arrives while the agent is down or NATS is restarting is delivered when both are back.
 *
 * Each fact is decoded and checked here, once: a record that is not a worker fact is reported through
 * `onDropped` and terminated (`term()`: JetStream never delivers it again), since no redelivery can make
 * it readable. A fact the agent fails to take in is redelivered after a second if the error is
 * retryable (the event log was unreachable), and reported and terminated otherwise.
 */
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { nodeName } from './node-name.ts';
import { EVENTS_STREAM, subjects } from './subjects.ts';
import type { WorkerEvent } from '../domain/ops.ts';
import { ensureError, err, type CorralError } from '../errors.ts';
import { decode } from './codec.ts';
import { isConsumerNotFound } from './nats-errors.ts';

/** A retryable failure to take a fact in: delivered again after this long. */
const REDELIVER_AFTER_MS = 1000;

export interface WorkerFactHandlers {
  /** Take one fact in; the fact is acknowledged once this resolves. */
  onFact(ev: WorkerEvent): Promise<void> | void;
  /**
   * A fact that will not be delivered again: unreadable, or refused by `onFact` with an error that is not
   * retryable. Log it (the fact stays in the stream at `seq` for `corral events`).
   */
  onDropped(e: CorralError, fact: { subject: string; seq: number }): void;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => !!v && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/**
 * A worker fact's record (`{node, sandbox, kind: 'worker', at, event}`, domain/ops.ts WorkerEvent) →
 * its event. @throws InvalidArgument naming what is wrong.
 */
export function decodeWorkerFact(data: Uint8Array): WorkerEvent {
  let rec: unknown;
  try {
    rec = decode(data);
  } catch (e) {
    throw err.invalid('worker fact is not MessagePack', e);
  }
  const ev = isObj(rec) ? rec.event : undefined;
  if (!isObj(ev)) throw err.invalid('worker fact has no event map');
  if (typeof ev.sandboxId !== 'string') throw err.invalid('worker fact event.sandboxId must be a string');
  switch (ev.kind) {
    case 'exit':
      if (typeof ev.containerId !== 'string' || !isNum(ev.exitStatus) || !isNum(ev.exitedAt))
        throw err.invalid('worker fact exit needs containerId (string), exitStatus and exitedAt (numbers)');
      if (ev.execId !== undefined && typeof ev.execId !== 'string')
        throw err.invalid('worker fact exit: execId must be a string when present');
      return {
        kind: 'exit',
        sandboxId: ev.sandboxId,
        containerId: ev.containerId,
        ...(ev.execId === undefined ? {} : { execId: ev.execId }),
        exitStatus: ev.exitStatus,
        exitedAt: ev.exitedAt,
      };
    case 'oom':
      if (typeof ev.containerId !== 'string' || !isNum(ev.at))
        throw err.invalid('worker fact oom needs containerId (string) and at (number)');
      return { kind: 'oom', sandboxId: ev.sandboxId, containerId: ev.containerId, at: ev.at };
    case 'vmExit':
      if (
        !isNum(ev.at) ||
        !(ev.code === null || isNum(ev.code)) ||
        !(ev.signal === null || typeof ev.signal === 'string')
      )
        throw err.invalid('worker fact vmExit needs at (number), code (number or null), signal (string or null)');
      return { kind: 'vmExit', sandboxId: ev.sandboxId, code: ev.code, signal: ev.signal, at: ev.at };
    default:
      throw err.invalid(`worker fact has an unknown event kind ${JSON.stringify(ev.kind)}`);
  }
}

/** What settling a fact uses of a JetStream message. */
export type DeliveredFact = Pick<JsMsg, 'data' | 'subject' | 'seq' | 'ack' | 'nak' | 'term'>;

/** Take one delivered fact in and settle it: ack, nak (retry later) or term (never again). */
export async function settleWorkerFact(m: DeliveredFact, h: WorkerFactHandlers): Promise<void> {
  const where = () => ({ subject: m.subject, seq: m.seq });
  let ev: WorkerEvent;
  try {
    ev = decodeWorkerFact(m.data);
  } catch (e) {
    h.onDropped(ensureError(e), where());
    m.term('undecodable worker fact');
    return;
  }
  try {
    await h.onFact(ev);
    m.ack();
  } catch (e) {
    const ce = ensureError(e);
    if (ce.retryable) {
      m.nak(REDELIVER_AFTER_MS);
      return;
    }
    h.onDropped(ce, where());
    m.term(`refused: ${ce.code}`);
  }
}

export async function consumeWorkerFacts(
  nc: NatsConnection,
  node: string,
  h: WorkerFactHandlers,
): Promise<{ stop(): void }> {
  const durable = `corral-agent-${nodeName(node)}-worker-facts`;
  const jsm = await jetstreamManager(nc);
  try {
    await jsm.consumers.info(EVENTS_STREAM, durable);
  } catch (e) {
    if (!isConsumerNotFound(e)) throw err.unavailable(`cannot read the worker-facts consumer ${durable}`, e);
    await jsm.consumers.add(EVENTS_STREAM, {
      durable_name: durable,
      filter_subject: subjects.evt(node, '*', 'worker'),
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.New,
      ack_wait: 30_000_000_000,
    });
  }
  const consumer = await jetstream(nc).consumers.get(EVENTS_STREAM, durable);
  const messages = await consumer.consume({ max_messages: 256 });
  void (async () => {
    for await (const m of messages) await settleWorkerFact(m, h);
  })();
  return {
    stop: () => {
      void messages.close();
    },
  };
}
