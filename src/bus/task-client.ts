/**
 * The Task API from the calling side. Every request may be sent again when the connection comes
 * back (rpc.ts): reads are safe to repeat, and the verbs that change something carry a fresh
 * `requestId`, so the agent joins a repeat to the first request or answers it with the first answer
 * (src/agent/idempotency.ts). A reply lost with a NATS server then costs a re-send, not a hung caller.
 */
import { randomUUID } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import { request, type RequestOptions } from './rpc.ts';
import { subjects, type TaskVerb } from './subjects.ts';

/**
 * An agent restarting, or an agent or controller reconnecting to another server of the cluster, is
 * briefly not subscribed: "no responders" is asked again this long before it is `Unavailable`.
 */
export const RESPONDERS_GRACE_MS = 3_000;

/** Verbs whose repeats need a `requestId` to be safe. */
export const CHANGING_VERBS: ReadonlySet<string> = new Set([
  'create',
  'createInline',
  'start',
  'kill',
  'delete',
  'exec',
  'pause',
  'resume',
  'resize',
  'closeIO',
  'update',
]);

/** `body` with a fresh `requestId` unless it has one. */
export const withRequestId = <B extends Record<string, unknown>>(body: B): B & { requestId: string } =>
  (body.requestId === undefined ? { ...body, requestId: randomUUID() } : body) as B & { requestId: string };

export function taskRequest<T>(
  nc: NatsConnection,
  node: string,
  verb: TaskVerb,
  body: Record<string, unknown>,
  timeoutMs: number,
  opts: RequestOptions = {},
): Promise<T> {
  const b = CHANGING_VERBS.has(verb) ? withRequestId(body) : body;
  return request<T>(nc, subjects.task(node, verb), b, timeoutMs, {
    resendOnReconnect: verb !== 'shutdown',
    respondersGraceMs: RESPONDERS_GRACE_MS,
    ...opts,
  });
}

/** A create through the fleet controller (`corral.v1.fleet.task.create`), safe to repeat in the same way. */
export function fleetCreateRequest<T>(
  nc: NatsConnection,
  body: Record<string, unknown>,
  timeoutMs: number,
  opts: RequestOptions = {},
): Promise<T> {
  return request<T>(nc, subjects.fleetCreate(), withRequestId(body), timeoutMs, {
    resendOnReconnect: true,
    respondersGraceMs: RESPONDERS_GRACE_MS,
    ...opts,
  });
}
