/**
 * The agent's one client for the Worker API (domain/ops.ts): typed by op, so a request or a result
 * that does not match the contract does not compile. Each call gets its opId from the caller (replay
 * re-issues an op with the opId it had), a deadline, the caller's AbortSignal, and fails at once with
 * Unavailable when the worker's process dies (WorkerWatch).
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { err } from '../errors.ts';
import { request } from '../bus/rpc.ts';
import { subjects } from '../bus/subjects.ts';
import type { OpArgs, OpName, OpResult, WorkerKind } from '../domain/ops.ts';
import type { WorkerWatch } from './worker-watch.ts';

/** NATS answers a little after the worker's own deadline, so its Timeout (with its undo) wins. */
const REPLY_SLACK_MS = 2_000;
/** Reads (scan) have no opId and a short bound. */
const READ_TIMEOUT_MS = 10_000;
/** The reason a finished call's controller is aborted with (it only releases the request's listeners). */
const SETTLED = Object.freeze({ settled: true });

export interface WorkerClientDeps {
  nc: NatsConnection;
  node: string;
  watch?: WorkerWatch;
}

export interface WorkerClient {
  /** Run `op` with idempotency key `opId` within `deadlineMs` from now; `signal` abandons it. */
  call<K extends WorkerKind, O extends OpName<K>>(
    kind: K,
    op: O,
    args: OpArgs<K, O>,
    o: { opId: string; deadlineMs: number; signal: AbortSignal },
  ): Promise<OpResult<K, O>>;
  /** A read op (no side effect, no opId). */
  read<K extends WorkerKind, O extends OpName<K>>(kind: K, op: O, args: OpArgs<K, O>): Promise<OpResult<K, O>>;
}

export function workerClient(d: WorkerClientDeps): WorkerClient {
  return {
    async call(kind, op, args, o) {
      if (o.signal.aborted) throw err.cancelled(`${op} cancelled`);
      const ac = new AbortController();
      const stop = () => ac.abort();
      o.signal.addEventListener('abort', stop, { once: true });
      const body = { opId: o.opId, deadlineMs: Date.now() + o.deadlineMs, ...args };
      type R = OpResult<typeof kind, typeof op>;
      const p = request<R>(d.nc, subjects.worker(d.node, kind, op), body, o.deadlineMs + REPLY_SLACK_MS, {
        signal: ac.signal,
      }).finally(() => {
        o.signal.removeEventListener('abort', stop);
        ac.abort(SETTLED); // a given reason: no AbortError (and its stack) made per call
      });
      return d.watch ? d.watch.track(kind, op, p, stop) : p;
    },
    read: (kind, op, args) => request(d.nc, subjects.worker(d.node, kind, op), args, READ_TIMEOUT_MS),
  };
}
