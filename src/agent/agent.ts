/**
 * The node agent: one actor per task (sandbox or pod container), the node's Task API, the
 * write-ahead event log, and the routing of worker events (process exits, VM deaths) to actors.
 *
 * Inputs reach an actor only after the event log has stored them (write-ahead). Replies to the Task
 * API come from the machines (`reply` emitted events); facts go to the event log in emission order.
 */
import { randomUUID } from 'node:crypto';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { createActor } from 'xstate';
import { CorralError, ensureError, err, type WireError } from '../errors.ts';
import { decode, encode } from '../bus/codec.ts';
import { serve, type Envelope } from '../bus/rpc.ts';
import { subjects, type TaskVerb } from '../bus/subjects.ts';
import { CHANGING_VERBS } from '../bus/task-client.ts';
import type { EventLog } from '../bus/eventlog.ts';
import type { Fact, Reply } from '../domain/task.ts';
import {
  containerMachine,
  provideEffects,
  sandboxMachine,
  stateName,
  type LifecycleActor,
  type LifecycleEvent,
} from '../machines/index.ts';
import type { WorkerEvent } from '../domain/ops.ts';
import type { Logger } from '../log.ts';
import type { CreateRules } from './create-rules.ts';
import { taskEffects, type Probe } from './effects.ts';
import { workerClient } from './worker-client.ts';
import { replay } from '../replay/engine.ts';
import { EffectGate } from '../replay/gate.ts';
import { readRecords, type EventRecord } from '../replay/records.ts';
import { consumeWorkerFacts } from '../bus/worker-facts.ts';
import type { Snapshots } from '../bus/snapshots.ts';
import type { Metrics } from './metrics.ts';
import { parseCreate, parseKill, parseWait, taskId } from '../bus/task-requests.ts';
import type { Settings } from './settings.ts';
import type { WorkerWatch } from './worker-watch.ts';
import { taskStatus, taskView, type TaskView } from './views.ts';
import { removeInlineBundle, writeInlineBundle } from './inline-bundle.ts';
import { RequestLedger, requestKey } from './idempotency.ts';

export interface AgentDeps {
  nc: NatsConnection;
  settings: Settings;
  rules: CreateRules;
  events: EventLog;
  log: Logger;
  metrics: Metrics;
  watch?: WorkerWatch;
  /** The node's entry in the fleet registry (capacity released when a task goes). */
  registration?: {
    release(req: { id: string }): Promise<unknown>;
    hold(id: string, r: { vcpus: number; memoryMiB: number; ref: string }): void;
  };
  /** Where fleet creates (inline specs) get their bundles: one of the bundle roots. */
  inlineBundleRoot: string;
  /** Actor snapshots (bounded recovery); without it recovery replays each task's whole log. */
  snapshots?: Snapshots;
  /** Test-only points on the create path (effects.ts `Probe`; `after:create-input` here). */
  probe?: Probe;
  /** Called when a `shutdown` request is accepted (no tasks left). */
  onShutdown?: () => void;
}

interface Task {
  fx?: { effectCount(): number };
  snapshotChain?: Promise<unknown>;
  /** Facts and state records still to be skipped: during recovery they are already in the log. */
  skip: { facts: number; states: number };
  id: string;
  kind: 'sandbox' | 'container';
  sandboxId: string;
  instance: string;
  actor: LifecycleActor;
  waiters: { reply: ReplyTo; timer?: NodeJS.Timeout }[];
  createdAt: number;
}

/**
 * A fleet create's spec and placement, recorded with its create input (the bundle path is this node's
 * alone): what `corral fleet drain --policy recreate` sends to the fleet again.
 */
function inlineOf(body: unknown): { inline?: { spec: unknown; placement: unknown } } {
  const o = body as { spec?: unknown; placement?: unknown };
  return o.spec && typeof o.spec === 'object' ? { inline: { spec: o.spec, placement: o.placement ?? {} } } : {};
}

/** Where a request's answer goes: its NATS reply subject, or (with a requestId) every copy of it. */
type ReplyTo = (env: Envelope<unknown>) => void;

export function buildAgent(d: AgentDeps) {
  const tasks = new Map<string, Task>();
  const pending = new Map<string, { reply: ReplyTo; verb: string; t0: number; after?: (ok: boolean) => void }>();
  const subs: Subscription[] = [];
  let stopFacts: (() => void) | undefined;
  const log = d.log;
  const workers = workerClient({ nc: d.nc, node: d.settings.node, watch: d.watch });

  const respond = (msg: Msg, body: Envelope<unknown>) => {
    if (msg.reply) {
      try {
        msg.respond(encode(body));
      } catch {
        /* requester gone */
      }
    }
  };
  /** Repeats of a request with a `requestId` join it or get its first answer (idempotency.ts). */
  const ledger = new RequestLedger(respond);
  const replyTo = (msg: Msg, key: string | undefined): ReplyTo =>
    key ? (env) => ledger.settle(key, env) : (env) => respond(msg, env);

  /** Write-ahead: store the input, then let the actor consume it. */
  async function input(t: Task, event: LifecycleEvent): Promise<void> {
    await d.events.append(t.sandboxId, 'input', { taskId: t.id, event: event as never });
    t.actor.send(event);
  }

  function onReply(r: Reply) {
    const p = pending.get(r.rid);
    if (!p) return;
    pending.delete(r.rid);
    if (p.verb === 'create') d.metrics.createDone(performance.now() - p.t0, r.ok);
    p.after?.(r.ok);
    p.reply(r.ok ? { ok: true, result: r.result } : { ok: false, error: r.error });
  }

  function onFact(t: Task, f: Fact) {
    void d.events
      .append(t.sandboxId, f.kind, { taskId: t.id, ...f.data })
      .catch((e) => log.error({ err: e, taskId: t.id }, 'event log append failed'));
    if (f.kind === 'rolledBack') d.metrics.rollback((f.data.leftovers as unknown[]).length === 0);
    // The task's capacity in the fleet registry goes back (idempotent: most tasks hold none).
    if ((f.kind === 'rolledBack' && (f.data.leftovers as unknown[]).length === 0) || f.kind === 'deleted')
      void d.registration
        ?.release({ id: t.id })
        .catch((e) => log.warn({ err: e, taskId: t.id }, 'capacity not released'));
    if (f.kind === 'exited' || f.kind === 'deleted') {
      const v = taskView(t.actor, t);
      for (const w of t.waiters.splice(0)) {
        clearTimeout(w.timer);
        w.reply({ ok: true, result: { exitStatus: v.exitStatus, exitedAt: v.exitedAt } });
      }
      // The VM of a sandbox is going away: its pod containers exit 255 and release their mounts.
      if (t.kind === 'sandbox')
        for (const c of tasks.values())
          if (c.kind === 'container' && c.sandboxId === t.id)
            void input(c, { type: 'hostGone', at: Date.now() }).catch(() => {});
    }
  }

  function effectsFor(
    t: Pick<Task, 'id' | 'kind' | 'sandboxId' | 'instance'> & { fx?: { effectCount(): number } },
    gate?: EffectGate,
    effectsFrom = 0,
  ) {
    return (t.fx = taskEffects(
      { workers, rules: d.rules, events: d.events, observeStep: d.metrics.step, probe: d.probe },
      {
        id: t.id,
        instance: t.instance,
        sandboxId: () => t.sandboxId,
        sandbox: () => {
          const c = t.kind === 'container' ? tasks.get(t.sandboxId)?.actor.getSnapshot().context : undefined;
          return c?.plan ? { pid: c.pid, plan: c.plan } : undefined;
        },
      },
      gate,
      effectsFrom,
    ));
  }

  const QUIET = new Set(['"created"', '{"running":"idle"}', '{"stopped":"clean"}']);
  /** At a quiet state (no effect in flight) the actor is saved with the sequence its state record got. */
  function snapshotAt(task: Task, value: string, seq: number) {
    if (!d.snapshots || !QUIET.has(value) || !task.fx) return;
    const save = {
      seq,
      taskId: task.id,
      sandboxId: task.sandboxId,
      machine: task.kind,
      instance: task.instance,
      effects: task.fx.effectCount(),
      createdAt: task.createdAt,
      snapshot: task.actor.getPersistedSnapshot(),
    };
    task.snapshotChain = (task.snapshotChain ?? Promise.resolve())
      .then(() => d.snapshots!.save(save))
      .catch((e) => log.warn({ err: e, taskId: task.id }, 'snapshot not saved'));
  }

  /** Logs each transition and records the state it led to (replay compares against these). */
  function inspector(task: Task) {
    const alog = log.child({ sandboxId: task.sandboxId, taskId: task.id, machine: task.kind });
    let last = '';
    return (ev: { type: string; actorRef: unknown; snapshot?: unknown; event: { type: string } }) => {
      if (ev.type !== '@xstate.snapshot' || ev.actorRef !== task.actor) return;
      const value = (ev.snapshot as { value?: unknown }).value;
      const s = JSON.stringify(value);
      if (s !== last) {
        alog.info(
          { state: s, event: ev.event.type, ...(task.skip.states > 0 ? { recovering: true } : {}) },
          'transition',
        );
        last = s;
      }
      if (task.skip.states > 0) {
        task.skip.states--;
        return;
      } // already in the log: this is a replay
      void d.events
        .append(task.sandboxId, 'state', { taskId: task.id, value: value as never, event: ev.event.type })
        .then(
          (seq) => snapshotAt(task, s, seq),
          () => {},
        );
    };
  }

  /** Replies, facts and the registry entry of a task's actor. */
  function wire(task: Task) {
    task.actor.on('reply', (r) => onReply(r as Reply));
    task.actor.on('fact', (f) => {
      if (task.skip.facts > 0) {
        task.skip.facts--;
        return;
      } // recorded before the crash, with its effects
      onFact(task, f as Fact);
    });
    task.actor.subscribe({
      next: (snap) => {
        // A failed create whose rollback is complete leaves no task behind (Kata registers none).
        const v = snap.value as unknown;
        if (
          v &&
          typeof v === 'object' &&
          (v as { failed?: string }).failed === 'clean' &&
          tasks.get(task.id) === task
        ) {
          tasks.delete(task.id);
          queueMicrotask(() => task.actor.stop());
          void (task.snapshotChain ?? Promise.resolve()).then(() => d.snapshots?.remove(task.id));
        }
      },
      complete: () => {
        if (tasks.get(task.id) === task) tasks.delete(task.id);
        void task.snapshotChain?.then(() => d.snapshots?.remove(task.id));
      },
      error: (e) => {
        log.error({ err: e, taskId: task.id }, 'actor crashed');
      },
    });
    tasks.set(task.id, task);
  }

  function spawn(
    id: string,
    kind: Task['kind'],
    sandboxId: string,
    req: ReturnType<typeof parseCreate>,
    rid: string,
  ): Task {
    const task = {
      id,
      kind,
      sandboxId,
      instance: randomUUID(),
      waiters: [],
      createdAt: Date.now(),
      skip: { facts: 0, states: 0 },
    } as unknown as Task;
    task.actor = createActor(provideEffects(kind === 'sandbox' ? sandboxMachine : containerMachine, effectsFor(task)), {
      input: { id, request: req, rid },
      inspect: inspector(task) as never,
    });
    wire(task);
    return task;
  }

  /**
   * After a restart: rebuild every task of this node from the event log (the replay engine, with the
   * recorded outcome of each effect), then let whatever was in flight run for real with its original
   * opIds, so workers answer with their first outcome. Facts and states already in the log are not
   * written again.
   */
  async function recover(): Promise<{ tasks: number; resumed: string[] }> {
    const records = await readRecords(d.nc, { node: d.settings.node });
    const bySandbox = new Map<string, EventRecord[]>();
    for (const r of records) bySandbox.set(r.sandbox, [...(bySandbox.get(r.sandbox) ?? []), r]);
    const snaps = d.snapshots ? await d.snapshots.all() : [];
    for (const sn of snaps) if (!bySandbox.has(sn.sandboxId)) bySandbox.set(sn.sandboxId, []);
    const gate = new EffectGate();
    const pendingTasks = new Map<string, Task>();
    for (const [sandbox, recs] of bySandbox) {
      const created = recs
        .filter((r) => r.kind === 'input' && (r.event as { type?: string } | undefined)?.type === 'create')
        .map((r) => r.taskId);
      const gone = new Set(
        recs
          .filter(
            (r) => r.kind === 'deleted' || (r.kind === 'state' && JSON.stringify(r.value) === '{"failed":"clean"}'),
          )
          .map((r) => r.taskId),
      );
      const from = snaps.filter((sn) => sn.sandboxId === sandbox && !gone.has(sn.taskId));
      if (from.length === 0 && created.every((id) => gone.has(id))) continue;
      const r = await replay(recs, {
        gate,
        from,
        stopOnDivergence: false,
        effects: (t, g) =>
          effectsFor(
            pendingTasks.get(t.taskId) ?? {
              id: t.taskId,
              kind: t.machine,
              sandboxId: t.sandboxId,
              instance: t.instance,
            },
            g,
            t.effectsFrom,
          ),
        inspect: (t) => {
          const task = {
            id: t.taskId,
            kind: t.machine,
            sandboxId: t.sandboxId,
            instance: t.instance,
            waiters: [],
            createdAt: Date.now(),
            skip: { facts: 0, states: 0 },
          } as unknown as Task;
          pendingTasks.set(t.taskId, task);
          return inspector(task);
        },
        onTask: (t) => {
          const task = pendingTasks.get(t.taskId)!;
          task.actor = t.actor;
          // A restored actor's first snapshot is the state it was saved in: already in the log.
          task.skip = { facts: t.recorded.facts, states: t.recorded.states + (t.fromSnapshot ? 1 : 0) };
          wire(task);
        },
      });
      if (r.divergence)
        log.error(
          { sandboxId: sandbox, divergence: r.divergence },
          'recovery: the rebuilt state differs from the recorded one',
        );
    }
    const resumed = gate.pending().map((p) => `${p.taskId}:${p.name}`);
    resumeRequests(records);
    gate.goLive();
    // Exits and VM deaths the workers reported while this agent was down (duplicates are ignored by the machines).
    const createdAt = new Map<string, number>();
    for (const r of records)
      if (r.kind === 'input' && (r.event as { type?: string } | undefined)?.type === 'create' && r.taskId)
        createdAt.set(r.taskId, r.seq);
    for (const r of records) {
      const ev = r.kind === 'worker' ? (r.event as WorkerEvent | undefined) : undefined;
      const id = ev && (ev.kind === 'exit' ? ev.containerId : ev.sandboxId);
      if (ev && id && tasks.has(id) && r.seq > (createdAt.get(id) ?? Infinity))
        await feedWorkerEvent(ev).catch((e) => log.error({ err: e }, 'worker fact lost in recovery'));
    }
    return { tasks: tasks.size, resumed };
  }

  /**
   * After a restart, creates recorded with a requestId are answerable again: a repeat of one still in
   * flight joins it; a repeat of a finished one gets its outcome from the log.
   */
  function resumeRequests(records: EventRecord[]): void {
    const open = new Map<string, { key: string; rid: string }>();
    for (const r of records) {
      const ev = r.event as { type?: string; rid?: string } | undefined;
      if (r.kind === 'input' && ev?.type === 'create' && typeof r.requestId === 'string' && r.taskId && ev.rid)
        open.set(r.taskId, { key: `${r.taskId}/${r.requestId}`, rid: ev.rid });
      const o = r.taskId ? open.get(r.taskId) : undefined;
      if (!o || (r.kind !== 'created' && r.kind !== 'rolledBack')) continue;
      ledger.settle(
        o.key,
        r.kind === 'created' ? { ok: true, result: { pid: r.pid } } : { ok: false, error: r.error as WireError },
      );
      open.delete(r.taskId!);
    }
    for (const [id, o] of open) {
      const t = tasks.get(id);
      if (!t || pending.has(o.rid)) continue;
      const ctx = t.actor.getSnapshot().context;
      if (taskStatus(t.actor) === 'unknown') {
        // still on the create path (or rolling it back): not answered yet
        ledger.admit(o.key, undefined);
        pending.set(o.rid, { reply: (env) => ledger.settle(o.key, env), verb: 'create', t0: performance.now() });
      } else if (stateName(t.actor) === 'failed') ledger.settle(o.key, { ok: false, error: ctx.error as WireError });
      else ledger.settle(o.key, { ok: true, result: { pid: ctx.pid } }); // finished during recovery, its fact not yet in the log
    }
  }

  const lookup = (id: string): Task => {
    const t = tasks.get(id);
    if (!t) throw err.notFound(`container does not exist ${id}`);
    return t;
  };

  /** Verbs answered later by the machine register the request and return `deferred`. */
  const deferred = Symbol('deferred');
  const handlers: Record<string, (body: unknown, reply: ReplyTo, after?: (ok: boolean) => void) => Promise<unknown>> = {
    async create(body, reply, after?: (ok: boolean) => void) {
      const req = parseCreate(body);
      d.rules.checkId(req.id);
      if (tasks.has(req.id)) throw err.exists(`task ${req.id} already exists`);
      const cls = await d.rules.classify(req);
      if (cls.type === 'pod_container') {
        const sb = tasks.get(cls.sandboxId);
        if (!sb || sb.kind !== 'sandbox')
          throw err.notFound(
            `sandbox ${cls.sandboxId} of container ${req.id} does not exist on node ${d.settings.node}`,
          );
        const st = stateName(sb.actor);
        if (st !== 'created' && st !== 'running')
          throw err.precondition(
            `BUG: Cannot start the container, since the sandbox hasn't been created (sandbox ${cls.sandboxId} is ${st})`,
          );
      }
      if (tasks.has(req.id)) throw err.exists(`task ${req.id} already exists`); // again: classify awaited
      const rid = randomUUID();
      const sandboxId = cls.type === 'pod_container' ? cls.sandboxId : req.id;
      pending.set(rid, { reply, verb: 'create', t0: performance.now(), after });
      const t = spawn(req.id, cls.type === 'pod_container' ? 'container' : 'sandbox', sandboxId, req, rid);
      try {
        await d.events.append(sandboxId, 'input', {
          taskId: req.id,
          requestId: (body as { requestId?: string }).requestId,
          ...inlineOf(body),
          event: {
            type: 'create',
            rid,
            request: req as never,
            containerType: cls.type,
            machine: t.kind,
            instance: t.instance,
          },
        });
      } catch (e) {
        tasks.delete(req.id);
        pending.delete(rid);
        throw e;
      }
      d.probe?.('after:create-input');
      t.actor.start();
      return deferred;
    },
    /**
     * A fleet create: the OCI spec travels inline (the controller could not name a bundle directory on a
     * node it had not chosen yet); this node writes the bundle under its own bundle root, then creates as
     * usual. A failed create removes the bundle it wrote. The controller has reserved capacity already.
     */
    async createInline(body, reply) {
      const o = (body && typeof body === 'object' ? body : {}) as Record<string, unknown>;
      const id = taskId(o);
      d.rules.checkId(id);
      if (!o.spec || typeof o.spec !== 'object' || Array.isArray(o.spec))
        throw err.invalid('spec must be the OCI spec (config.json) as a map');
      if (tasks.has(id)) throw err.exists(`task ${id} already exists`);
      const bundle = writeInlineBundle(d.inlineBundleRoot, id, o.spec as Record<string, unknown>);
      const remove = () => removeInlineBundle(bundle);
      try {
        const res = o.reservation as { vcpus: number; memoryMiB: number; ref: string } | null | undefined;
        return await handlers.create!({ ...o, bundle }, reply, (ok) => {
          if (!ok) remove();
          else if (res && typeof res === 'object') d.registration?.hold(id, res); // its reservation is this node's to keep now
        });
      } catch (e) {
        remove();
        throw e;
      }
    },
    async start(body, reply) {
      return command(body, reply, (rid, at) => ({ type: 'start', rid, at }));
    },
    async delete(body, reply) {
      return command(body, reply, (rid, at) => ({ type: 'delete', rid, at }));
    },
    async kill(body, reply) {
      const k = parseKill(body);
      // Kata: the init process of a task is always signalled with all=true.
      return command(body, reply, (rid, at) => ({ type: 'kill', rid, at, signal: k.signal, all: true }));
    },
    async state(body) {
      const t = lookup(taskId(body));
      return taskView(t.actor, t);
    },
    async pids(body) {
      const t = lookup(taskId(body));
      return { pids: [{ pid: t.actor.getSnapshot().context.pid }] };
    },
    async list() {
      return { tasks: [...tasks.values()].map((t) => taskView(t.actor, t)) };
    },
    async wait(body, reply) {
      const w = parseWait(body);
      const t = lookup(w.id);
      const v = taskView(t.actor, t);
      if (taskStatus(t.actor) === 'stopped') return { exitStatus: v.exitStatus, exitedAt: v.exitedAt };
      const waiter: Task['waiters'][number] = { reply };
      if (w.timeoutMs > 0)
        waiter.timer = setTimeout(() => {
          t.waiters.splice(t.waiters.indexOf(waiter), 1);
          reply({ ok: false, error: err.timeout(`task ${w.id} did not exit within ${w.timeoutMs} ms`).toWire() });
        }, w.timeoutMs);
      t.waiters.push(waiter);
      return deferred;
    },
    async shutdown() {
      if (tasks.size > 0)
        throw err.precondition(`node ${d.settings.node} still holds ${tasks.size} task(s); delete them first`);
      setImmediate(() => d.onShutdown?.());
      return {};
    },
    async pause() {
      throw err.notImplemented('pause is not implemented by this node');
    },
    async resume() {
      throw err.notImplemented('resume is not implemented by this node');
    },
    async exec() {
      throw err.notImplemented('exec is not implemented by this node');
    },
  };

  async function command(body: unknown, reply: ReplyTo, make: (rid: string, at: number) => LifecycleEvent) {
    const t = lookup(taskId(body));
    const rid = randomUUID();
    pending.set(rid, { reply, verb: 'cmd', t0: performance.now() });
    try {
      await input(t, make(rid, Date.now()));
    } catch (e) {
      pending.delete(rid);
      throw e;
    }
    return deferred;
  }

  /** Resolves once the fact is journaled as the task's input (or is nobody's): the consumer then acks it. */
  async function feedWorkerEvent(ev: WorkerEvent): Promise<void> {
    const t = tasks.get(ev.kind === 'exit' ? ev.containerId : ev.sandboxId);
    if (!t) return;
    await input(
      t,
      ev.kind === 'exit'
        ? { type: 'exit', exitStatus: ev.exitStatus, exitedAt: ev.exitedAt }
        : { type: 'hostGone', at: ev.at },
    );
  }

  return {
    tasks,
    recover,
    start() {
      const prefix = subjects.task(d.settings.node, '*').slice(0, -1);
      subs.push(
        d.nc.subscribe(subjects.task(d.settings.node, '*'), {
          callback: (e, msg) => {
            if (e) return;
            const verb = msg.subject.slice(prefix.length) as TaskVerb;
            void (async () => {
              let reply: ReplyTo = (env) => respond(msg, env);
              try {
                const h = Object.hasOwn(handlers, verb) ? handlers[verb] : undefined;
                if (!h)
                  throw err.invalid(`unknown verb ${JSON.stringify(verb)}; verbs: ${Object.keys(handlers).join(', ')}`);
                const body = decode(msg.data);
                const key = CHANGING_VERBS.has(verb) ? requestKey(body) : undefined;
                if (ledger.admit(key, msg)) return; // a repeat: joined, or answered from memory
                reply = replyTo(msg, key);
                const result = await h(body, reply);
                if (result !== deferred) reply({ ok: true, result });
              } catch (x) {
                if (!(x instanceof CorralError)) log.error({ err: x, verb }, 'handler failed');
                reply({ ok: false, error: ensureError(x).toWire() });
              }
            })();
          },
        }),
      );
      void consumeWorkerFacts(d.nc, d.settings.node, {
        onFact: feedWorkerEvent,
        onDropped: (e, fact) => log.error({ err: e, ...fact }, 'worker fact dropped'),
      }).then(
        (c) => {
          stopFacts = c.stop;
        },
        (e) => log.error({ err: e }, 'cannot consume worker facts'),
      );
      void serve; // request/reply helper used by workers; the Task API routes verbs itself
    },
    /** Kill every sandbox, wait for teardown, delete every task: what `corral up` does on Ctrl-C. */
    async teardownAll(timeoutMs: number): Promise<void> {
      const until = Date.now() + timeoutMs;
      const at = () => Date.now();
      for (const t of [...tasks.values()]) {
        const st = stateName(t.actor);
        if (t.kind === 'sandbox' && (st === 'created' || st === 'running'))
          await input(t, { type: 'kill', rid: 'teardown', signal: 9, all: true, at: at() }).catch(() => {});
      }
      while (tasks.size > 0 && Date.now() < until) {
        for (const t of [...tasks.values()]) {
          const st = stateName(t.actor);
          if (st === 'created' || st === 'running')
            await input(t, { type: 'kill', rid: 'teardown', signal: 9, all: true, at: at() }).catch(() => {});
          if (st === 'stopped') await input(t, { type: 'delete', rid: 'teardown', at: at() }).catch(() => {});
        }
        await new Promise((r) => setTimeout(r, 200));
      }
      if (tasks.size > 0) throw err.timeout(`teardown left ${tasks.size} task(s): ${[...tasks.keys()].join(', ')}`);
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
