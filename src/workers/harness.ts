/**
 * The loop every worker runs: serve `worker.<kind>.<op>`, de-duplicate by opId (the first outcome is
 * the answer forever, also across restarts through an append-only journal file), give each op an
 * AbortSignal that fires at its deadline, and answer with the `{ok, result | error}` envelope.
 *
 * Handlers own the undo of a half-done op: when the signal fires they stop, undo and throw.
 */
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { CorralError, ensureError, err } from '../errors.ts';
import { LATER, serve } from '../bus/serve.ts';
import { subjects } from '../bus/subjects.ts';
import type { OpContext, WorkerKind } from '../domain/ops.ts';
import type { Envelope } from '../bus/envelope.ts';

export type { OpContext } from '../domain/ops.ts';
export type OpHandler = (req: Record<string, unknown>, ctx: OpContext) => Promise<unknown>;

export interface WorkerOptions {
  nc: NatsConnection;
  node: string;
  kind: WorkerKind;
  handlers: Record<string, OpHandler>;
  /** Append-only journal of outcomes; omit to keep it in memory only. */
  journalPath?: string;
  /** Ops that are reads: never journaled, no opId needed. */
  readOps?: string[];
  onInternal?: (e: unknown, op: string) => void;
  /** Test hook: called before an op runs; used by fault injection. */
  beforeOp?: (op: string, req: Record<string, unknown>) => Promise<void> | void;
}

const MAX_JOURNAL = 50_000;
const DEFAULT_DEADLINE_MS = 60_000;

export class Journal {
  private done = new Map<string, Envelope<unknown>>();
  constructor(private path?: string) {
    if (!path) return;
    mkdirSync(dirname(path), { recursive: true });
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      return;
    }
    for (const line of text.split('\n')) {
      if (!line) continue;
      try {
        const { opId, env } = JSON.parse(line) as { opId: string; env: Envelope<unknown> };
        this.done.set(opId, env);
      } catch {
        /* a torn last line after a crash: the op will simply run again */
      }
    }
  }
  get(opId: string) {
    return this.done.get(opId);
  }
  put(opId: string, env: Envelope<unknown>) {
    this.done.set(opId, env);
    if (this.done.size > MAX_JOURNAL) this.done.delete(this.done.keys().next().value as string);
    if (this.path) appendFileSync(this.path, JSON.stringify({ opId, env }) + '\n');
  }
}

export function runWorker(o: WorkerOptions): { sub: Subscription; journal: Journal } {
  const journal = new Journal(o.journalPath);
  const inflight = new Map<string, Promise<Envelope<unknown>>>();
  const reads = new Set(o.readOps ?? []);
  const prefix = subjects.worker(o.node, o.kind, '');

  const startedAt = Date.now();
  // `__ping`: which process serves this worker (the agent adopts a live worker after its own restart).
  const builtins: Record<string, OpHandler> = { __ping: async () => ({ pid: process.pid, kind: o.kind, startedAt }) };
  const run = async (op: string, body: unknown): Promise<Envelope<unknown>> => {
    const handler = Object.hasOwn(o.handlers, op)
      ? o.handlers[op]
      : Object.hasOwn(builtins, op)
        ? builtins[op]
        : undefined;
    if (!handler) throw err.invalid(`unknown ${o.kind} worker op: ${JSON.stringify(op)}`);
    if (!body || typeof body !== 'object' || Array.isArray(body)) throw err.invalid(`${op}: request must be a map`);
    const req = body as Record<string, unknown>;
    const isRead = reads.has(op) || op.startsWith('__'); // `__` ops are test controls, never journaled
    const opId = req.opId;
    if (!isRead && (typeof opId !== 'string' || opId.length === 0 || opId.length > 256))
      throw err.invalid(`${op}: opId must be a non-empty string`);
    const deadlineMs = typeof req.deadlineMs === 'number' ? req.deadlineMs : Date.now() + DEFAULT_DEADLINE_MS;
    const key = `${op}:${String(opId)}`;
    if (!isRead) {
      const first = journal.get(key);
      if (first) return first;
      const running = inflight.get(key);
      if (running) return running;
    }
    const p = (async (): Promise<Envelope<unknown>> => {
      const ac = new AbortController();
      const left = deadlineMs - Date.now();
      const timer = setTimeout(() => ac.abort(err.timeout(`${o.kind}.${op} passed its deadline`)), Math.max(0, left));
      try {
        if (left <= 0) throw err.timeout(`${o.kind}.${op} arrived after its deadline`);
        await o.beforeOp?.(op, req);
        const result = await handler(req, { signal: ac.signal, deadlineMs, opId: String(opId) });
        return { ok: true, result };
      } catch (x) {
        if (!(x instanceof CorralError)) o.onInternal?.(x, op);
        return { ok: false, error: ensureError(x).toWire() };
      } finally {
        clearTimeout(timer);
      }
    })();
    if (isRead) return p;
    inflight.set(key, p);
    const env = await p;
    inflight.delete(key);
    journal.put(key, env);
    return env;
  };

  // Errors thrown by `run` (bad op, bad request) are coded replies; journaled outcomes are answered as they are.
  const sub = serve(o.nc, `${prefix}*`, async (body, req) => {
    req.reply(await run(req.verb, body));
    return LATER;
  });
  return { sub, journal };
}
