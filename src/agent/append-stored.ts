/**
 * Write-ahead that holds: an input (a request, a worker fact, an effect's outcome) reaches its machine
 * only once it is in the event log, and once it is there the machine gets it, in the log's order, or
 * replay would rebuild something else than what ran. So the append is held (eventlog.ts HoldOptions):
 * past its deadline (no JetStream leader through a failover; an ack lost although the record was stored)
 * it keeps its sandbox's lane, so nothing of that sandbox is stored before it, and sends the record again
 * under the same Nats-Msg-Id, which JetStream stores once, until it is stored or `stop`/`signal` say it is
 * no longer wanted (the task's actor stopped: the agent's teardown has its own deadline). Should the
 * appender fail anyway (its connection closed), it is tried again with back-off (250 ms doubling to 5 s)
 * on the same terms. A refusal that is not retryable (a malformed record) stands at once.
 */
import { randomUUID } from 'node:crypto';
import { ensureError, type CorralError } from '../errors.ts';
import type { EventAppender, Share } from '../bus/eventlog.ts';

export interface StoredOptions {
  /** The record's Nats-Msg-Id. @default a new UUID, kept across the retries */
  msgId?: string;
  /** Aborted: give up (the last error is thrown). */
  signal?: AbortSignal;
  /** Checked before each retry: true gives up. */
  stop?: () => boolean;
  /** Each failed attempt that is tried again (for the log). */
  onRetry?: (e: CorralError) => void;
  /** May share a message with the records of its sandbox beside it (eventlog.ts Share). */
  share?: Share;
}

export async function appendStored(
  events: EventAppender,
  sandbox: string,
  kind: string,
  data: Record<string, unknown>,
  o: StoredOptions = {},
): Promise<number> {
  const msgId = o.msgId ?? randomUUID();
  for (let delay = 250; ; delay = Math.min(delay * 2, 5000)) {
    try {
      const hold = { signal: o.signal, stop: o.stop, onRetry: o.onRetry };
      return await events.append(sandbox, kind, data, msgId, hold, o.share);
    } catch (e) {
      const ce = ensureError(e);
      if (!ce.retryable || o.signal?.aborted || o.stop?.()) throw ce;
      o.onRetry?.(ce);
      await pause(delay, o.signal);
    }
  }
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
