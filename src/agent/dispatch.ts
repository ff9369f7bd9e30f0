/**
 * One Task API request, from its verb and decoded body to its one answer: a changing verb's
 * idempotency key is admitted to the request ledger first (a repeat joins its first copy, or gets its
 * answer: idempotency.ts), then the verb's handler (task-api.ts) runs and answers now or later.
 * Transport-free: the agent serves it on NATS (agent.ts); the simulator (sim/) calls it directly.
 *
 * Throws (InvalidArgument) for an unknown verb or a malformed requestId: the caller answers that.
 */
import { CorralError, ensureError, err } from '../errors.ts';
import { LATER } from '../bus/serve.ts';
import { CHANGING_VERBS } from '../bus/task-client.ts';
import type { Log } from '../log.ts';
import { requestKey, type RequestLedger } from './idempotency.ts';
import type { VerbHandler } from './task-api.ts';
import type { ReplyTo } from './task-table.ts';

export type TaskDispatch<M> = (verb: string, body: unknown, req: { msg: M; reply: ReplyTo }) => Promise<void>;

export function taskDispatch<M>(
  handlers: Record<string, VerbHandler>,
  ledger: RequestLedger<M>,
  log: Log,
): TaskDispatch<M> {
  return async (verb, body, req) => {
    const h = Object.hasOwn(handlers, verb) ? handlers[verb] : undefined;
    if (!h) throw err.invalid(`unknown verb ${JSON.stringify(verb)}; verbs: ${Object.keys(handlers).join(', ')}`);
    const key = CHANGING_VERBS.has(verb) ? requestKey(body) : undefined;
    if (ledger.admit(key, req.msg)) return; // a repeat: joined, or answered from memory
    const reply: ReplyTo = key ? (env) => ledger.settle(key, env) : (env) => req.reply(env);
    try {
      const result = await h(body, reply);
      if (result !== LATER) reply({ ok: true, result });
    } catch (e) {
      if (!(e instanceof CorralError)) log.error({ err: e, verb }, 'task API handler failed');
      reply({ ok: false, error: ensureError(e).toWire() });
    }
  };
}
