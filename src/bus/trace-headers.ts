/**
 * Trace context on the wire: W3C `traceparent` and `tracestate` (util/trace-w3c.ts) in NATS message
 * headers. A requester (rpc.ts) sends the active span's context with each request; the serving loop
 * (serve.ts) runs each request it serves in a SERVER span, child of the requester's span (a request
 * without one starts a trace), named by its operation: the subject without `corral.v1.` and
 * `node.<node>.` (`task.create`, `worker.mount.mountRootfs`, `fleet.task.create`; ids never: the
 * stdin data plane is `io.stdin` / `io.exec.stdin`). The span ends when the request is answered
 * ({@link answered}, called by serve.ts' `respond`), failed when the answer is an error, with its code.
 * While tracing is off there are no headers and no spans.
 */
import { headers, type Msg, type MsgHdrs } from '@nats-io/transport-node';
import {
  extractContext,
  failSpan,
  injectContext,
  SpanKind,
  startSpan,
  tracing,
  withContext,
  type Span,
} from '../util/trace.ts';
import type { Envelope } from './envelope.ts';
import { PREFIX } from './subjects.ts';

/** The spans of requests being served, until their answer. */
const open = new WeakMap<Msg, Span>();

/** The headers carrying the active span's context; undefined when tracing is off or no span is active. */
export function traceHeaders(): MsgHdrs | undefined {
  if (!tracing()) return undefined;
  let h: MsgHdrs | undefined;
  injectContext(undefined, {
    set: (_carrier, key, value) => {
      (h ??= headers()).set(key, value);
    },
  });
  return h;
}

/** A served subject as its span's name. */
export function operationName(subject: string): string {
  const rest = subject.startsWith(`${PREFIX}.`) ? subject.slice(PREFIX.length + 1) : subject;
  const op = /^node\.[^.]+\.(.+)$/.exec(rest)?.[1] ?? rest;
  if (!op.startsWith('io.')) return op;
  return op.endsWith('.stdin') ? (op.includes('.exec.') ? 'io.exec.stdin' : 'io.stdin') : 'io';
}

/** Runs `serve` (the handling of `msg`) in the request's SERVER span; just runs it while tracing is off. */
export function servedIn(msg: Msg, serve: () => void): void {
  if (!tracing()) return serve();
  const parent = extractContext(msg.headers, {
    get: (h, key) => (h?.has(key) ? h.get(key) : undefined),
    keys: (h) => h?.keys() ?? [],
  });
  const s = startSpan(operationName(msg.subject), {
    kind: SpanKind.SERVER,
    parent,
    attributes: { 'messaging.system': 'nats', 'messaging.destination.name': msg.subject },
  });
  if (!s) return serve();
  open.set(msg, s.span);
  withContext(s.ctx, serve);
}

/** The request was answered with `env`: its span ends (failed, for an error). */
export function answered(msg: Msg, env: Envelope<unknown>): void {
  const span = open.get(msg);
  if (!span) return;
  open.delete(msg);
  if (!env.ok) failSpan(span, env.error);
  span.end();
}
