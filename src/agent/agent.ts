/**
 * The node agent, composed: the task table and the actors' runtime (task-runtime.ts), the Task API
 * (task-api.ts) served on `corral.v1.node.<node>.task.<verb>` through the one serving loop
 * (bus/serve.ts) with idempotency keys (dispatch.ts, idempotency.ts), recovery from the event log (recovery.ts),
 * and the worker facts (process exits, VM deaths) routed to their tasks.
 *
 * Inputs reach an actor only after the event log has stored them (write-ahead, journal.ts). Replies
 * to the Task API come from the machines (`reply` emitted events); facts go to the event log in
 * emission order.
 */
import type { Subscription } from '@nats-io/transport-node';
import { err } from '../errors.ts';
import { readRecords } from '../bus/eventlog-reader.ts';
import { LATER, respond, serve } from '../bus/serve.ts';
import { subjects } from '../bus/subjects.ts';
import { consumeWorkerFacts } from '../bus/worker-facts.ts';
import { stateName } from '../machines/index.ts';
import { taskDispatch } from './dispatch.ts';
import { RequestLedger } from './idempotency.ts';
import { recover } from './recovery.ts';
import { taskApi } from './task-api.ts';
import { TaskRuntime } from './task-runtime.ts';
import { taskView, type TaskView } from './views.ts';
import { workerClient } from './worker-client.ts';

import type { AgentDeps } from './deps.ts';

export type { AgentDeps } from './deps.ts';

/** How often a teardown looks again at what is left (it re-sends kills and deletes until nothing is). */
const TEARDOWN_POLL_MS = 200;

export function buildAgent(d: AgentDeps) {
  const workers = workerClient({ nc: d.nc, node: d.settings.node, watch: d.watch });
  const rt = new TaskRuntime({
    ...d,
    workers,
    readLog: d.readLog ?? (() => readRecords(d.nc, { node: d.settings.node })),
  });
  const { tasks } = rt;
  /** Repeats of a request with a `requestId` join it or get its first answer (idempotency.ts). */
  const ledger = new RequestLedger(respond);
  const dispatch = taskDispatch(taskApi(rt, d.onShutdown), ledger, d.log);
  const subs: Subscription[] = [];
  let stopFacts: (() => void) | undefined;

  const kill = { type: 'kill', rid: 'teardown', signal: 9, all: true } as const;
  return {
    tasks,
    /** The typed Worker API client (reconciliation at start uses it too). */
    workers: rt.workers,
    recover: () => recover(rt, ledger),
    start() {
      subs.push(
        serve(
          d.nc,
          subjects.task(d.settings.node, '*'),
          async (body, req) => {
            await dispatch(req.verb, body, req);
            return LATER;
          },
          { onInternal: (e, subject) => d.log.error({ err: e, subject }, 'task API handler failed') },
        ),
      );
      consumeWorkerFacts(d.nc, d.settings.node, {
        onFact: (ev) => rt.feedWorkerEvent(ev),
        onDropped: (e, fact) => d.log.error({ err: e, ...fact }, 'worker fact dropped'),
      }).then(
        (c) => {
          stopFacts = () => c.stop();
        },
        (e: unknown) => d.log.error({ err: e }, 'cannot consume worker facts'),
      );
    },
    /** Kill every sandbox, wait for teardown, delete every task: what `corral up` does on Ctrl-C. */
    async teardownAll(timeoutMs: number): Promise<void> {
      const until = Date.now() + timeoutMs;
      const lost = (e: unknown) => d.log.warn({ err: e }, 'teardown input not journaled; sent again next round');
      for (const t of tasks.values()) {
        const st = stateName(t.actor);
        if (t.kind === 'sandbox' && (st === 'created' || st === 'running'))
          await rt.input(t, { ...kill, at: Date.now() }).catch(lost);
      }
      while (tasks.size > 0 && Date.now() < until) {
        for (const t of tasks.values()) {
          const st = stateName(t.actor);
          if (st === 'created' || st === 'running') await rt.input(t, { ...kill, at: Date.now() }).catch(lost);
          if (st === 'stopped') await rt.input(t, { type: 'delete', rid: 'teardown', at: Date.now() }).catch(lost);
        }
        await new Promise((r) => setTimeout(r, TEARDOWN_POLL_MS));
      }
      if (tasks.size > 0) throw err.timeout(`teardown left ${tasks.size} task(s): ${tasks.ids().join(', ')}`);
    },
    async stop() {
      stopFacts?.();
      for (const s of subs) s.unsubscribe();
      for (const t of tasks.values()) t.actor.stop();
    },
    view: (id: string): TaskView | undefined => {
      const t = tasks.get(id);
      return t && taskView(t.actor, t);
    },
  };
}

export type Agent = ReturnType<typeof buildAgent>;
