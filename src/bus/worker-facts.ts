/**
 * The agent's feed of worker facts (process exits, VM deaths): a durable JetStream consumer on
 * `corral.v1.evt.<node>.*.worker`, acknowledged after the agent has taken each one in. A fact that
 * arrives while the agent is down or NATS is restarting is delivered when both are back.
 */
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { nodeName } from './node-name.ts';
import { EVENTS_STREAM, subjects } from './subjects.ts';

export async function consumeWorkerFacts(
  nc: NatsConnection,
  node: string,
  onFact: (data: Uint8Array) => Promise<void> | void,
): Promise<{ stop(): void }> {
  const durable = `corral-agent-${nodeName(node)}-worker-facts`;
  const jsm = await jetstreamManager(nc);
  try {
    await jsm.consumers.info(EVENTS_STREAM, durable);
  } catch {
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
    for await (const m of messages) {
      try {
        await onFact(m.data);
        m.ack();
      } catch {
        m.nak(1000);
      }
    }
  })();
  return {
    stop: () => {
      void messages.close();
    },
  };
}
