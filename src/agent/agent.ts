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
import { CorralError, ensureError, err } from '../errors.ts';
import { decode, encode } from '../bus/codec.ts';
import { serve } from '../bus/rpc.ts';
import { subjects, type TaskVerb } from '../bus/subjects.ts';
import type { EventLog } from '../bus/eventlog.ts';
import type { Fact, Reply } from '../domain/task.ts';
import { containerMachine, provideEffects, sandboxMachine, stateName, type LifecycleActor, type LifecycleEvent } from '../machines/index.ts';
import type { WorkerEvent } from '../workers/protocol.ts';
import type { Logger } from '../log.ts';
import type { CreateRules } from './create-rules.ts';
import { taskEffects } from './effects.ts';
import type { Metrics } from './metrics.ts';
import { parseCreate, parseKill, parseWait, taskId } from './requests.ts';
import type { Settings } from './settings.ts';
import type { WorkerWatch } from './worker-watch.ts';
import { taskStatus, taskView, type TaskView } from './views.ts';

export interface AgentDeps {
  nc: NatsConnection;
  settings: Settings;
  rules: CreateRules;
  events: EventLog;
  log: Logger;
  metrics: Metrics;
  watch?: WorkerWatch;
  /** Called when a `shutdown` request is accepted (no tasks left). */
  onShutdown?: () => void;
}

interface Task {
  id: string;
  kind: 'sandbox' | 'container';
  sandboxId: string;
  instance: string;
  actor: LifecycleActor;
  waiters: { msg: Msg; timer?: NodeJS.Timeout }[];
  createdAt: number;
}

export function buildAgent(d: AgentDeps) {
  const tasks = new Map<string, Task>();
  const pending = new Map<string, { msg: Msg; verb: string; t0: number }>();
  const subs: Subscription[] = [];
  const log = d.log;

  const respond = (msg: Msg, body: unknown) => { if (msg.reply) { try { msg.respond(encode(body)); } catch { /* requester gone */ } } };

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
    respond(p.msg, r.ok ? { ok: true, result: r.result } : { ok: false, error: r.error });
  }

  function onFact(t: Task, f: Fact) {
    void d.events.append(t.sandboxId, f.kind, { taskId: t.id, ...f.data }).catch((e) => log.error({ err: e, taskId: t.id }, 'event log append failed'));
    if (f.kind === 'rolledBack') d.metrics.rollback((f.data.leftovers as unknown[]).length === 0);
    if (f.kind === 'exited') {
      const v = taskView(t.actor, t);
      for (const w of t.waiters.splice(0)) { clearTimeout(w.timer); respond(w.msg, { ok: true, result: { exitStatus: v.exitStatus, exitedAt: v.exitedAt } }); }
      // The VM of a sandbox is going away: its pod containers exit 255 and release their mounts.
      if (t.kind === 'sandbox') for (const c of tasks.values()) if (c.kind === 'container' && c.sandboxId === t.id) void input(c, { type: 'hostGone', at: Date.now() }).catch(() => {});
    }
  }

  function spawn(id: string, kind: Task['kind'], sandboxId: string, req: ReturnType<typeof parseCreate>, rid: string): Task {
    const instance = randomUUID();
    const task = { id, kind, sandboxId, instance, waiters: [], createdAt: Date.now() } as unknown as Task;
    const fx = taskEffects(
      { nc: d.nc, settings: d.settings, rules: d.rules, events: d.events, observeStep: d.metrics.step, watch: d.watch },
      { id, instance, sandboxId: () => sandboxId, sandbox: () => { const c = kind === 'container' ? tasks.get(sandboxId)?.actor.getSnapshot().context : undefined; return c?.plan ? { pid: c.pid, plan: c.plan } : undefined; } },
    );
    const machine = provideEffects(kind === 'sandbox' ? sandboxMachine : containerMachine, fx);
    const alog = log.child({ sandboxId, taskId: id, machine: kind });
    let last = '';
    task.actor = createActor(machine, {
      input: { id, request: req, rid },
      inspect: (ev) => {
        if (ev.type !== '@xstate.snapshot' || ev.actorRef !== task.actor) return;
        const value = (ev.snapshot as { value?: unknown }).value;
        const s = JSON.stringify(value);
        if (s !== last) { alog.info({ state: s, event: ev.event.type }, 'transition'); last = s; }
        // The state each input led to: what replay's determinism check compares against.
        void d.events.append(sandboxId, 'state', { taskId: id, value: value as never, event: ev.event.type }).catch(() => {});
      },
    });
    task.actor.on('reply', (r) => onReply(r as Reply));
    task.actor.on('fact', (f) => onFact(task, f as Fact));
    task.actor.subscribe({
      next: (snap) => {
        // A failed create whose rollback is complete leaves no task behind (Kata registers none).
        const v = snap.value as unknown;
        if (v && typeof v === 'object' && (v as { failed?: string }).failed === 'clean' && tasks.get(id) === task) { tasks.delete(id); queueMicrotask(() => task.actor.stop()); }
      },
      complete: () => { if (tasks.get(id) === task) tasks.delete(id); },
      error: (e) => { alog.error({ err: e }, 'actor crashed'); },
    });
    tasks.set(id, task);
    return task;
  }

  const lookup = (id: string): Task => {
    const t = tasks.get(id);
    if (!t) throw err.notFound(`container does not exist ${id}`);
    return t;
  };

  /** Verbs answered later by the machine register the request and return `deferred`. */
  const deferred = Symbol('deferred');
  const handlers: Record<string, (body: unknown, msg: Msg) => Promise<unknown>> = {
    async create(body, msg) {
      const req = parseCreate(body);
      d.rules.checkId(req.id);
      if (tasks.has(req.id)) throw err.exists(`task ${req.id} already exists`);
      const cls = await d.rules.classify(req);
      if (cls.type === 'pod_container') {
        const sb = tasks.get(cls.sandboxId);
        if (!sb || sb.kind !== 'sandbox') throw err.notFound(`sandbox ${cls.sandboxId} of container ${req.id} does not exist on node ${d.settings.node}`);
        const st = stateName(sb.actor);
        if (st !== 'created' && st !== 'running') throw err.precondition(`BUG: Cannot start the container, since the sandbox hasn't been created (sandbox ${cls.sandboxId} is ${st})`);
      } else if (tasks.has(req.id)) throw err.exists(`task ${req.id} already exists`);
      if (tasks.has(req.id)) throw err.exists(`task ${req.id} already exists`);
      const rid = randomUUID();
      const sandboxId = cls.type === 'pod_container' ? cls.sandboxId : req.id;
      pending.set(rid, { msg, verb: 'create', t0: performance.now() });
      const t = spawn(req.id, cls.type === 'pod_container' ? 'container' : 'sandbox', sandboxId, req, rid);
      try {
        await d.events.append(sandboxId, 'input', { taskId: req.id, event: { type: 'create', rid, request: req as never, containerType: cls.type, machine: t.kind, instance: t.instance } });
      } catch (e) { tasks.delete(req.id); pending.delete(rid); throw e; }
      t.actor.start();
      return deferred;
    },
    async start(body, msg) { return command(body, msg, (rid, at) => ({ type: 'start', rid, at })); },
    async delete(body, msg) { return command(body, msg, (rid, at) => ({ type: 'delete', rid, at })); },
    async kill(body, msg) {
      const k = parseKill(body);
      // Kata: the init process of a task is always signalled with all=true.
      return command(body, msg, (rid, at) => ({ type: 'kill', rid, at, signal: k.signal, all: true }));
    },
    async state(body) { const t = lookup(taskId(body)); return taskView(t.actor, t); },
    async pids(body) { const t = lookup(taskId(body)); return { pids: [{ pid: t.actor.getSnapshot().context.pid }] }; },
    async list() { return { tasks: [...tasks.values()].map((t) => taskView(t.actor, t)) }; },
    async wait(body, msg) {
      const w = parseWait(body);
      const t = lookup(w.id);
      const v = taskView(t.actor, t);
      if (taskStatus(t.actor) === 'stopped') return { exitStatus: v.exitStatus, exitedAt: v.exitedAt };
      const waiter: Task['waiters'][number] = { msg };
      if (w.timeoutMs > 0) waiter.timer = setTimeout(() => {
        t.waiters.splice(t.waiters.indexOf(waiter), 1);
        respond(msg, { ok: false, error: err.timeout(`task ${w.id} did not exit within ${w.timeoutMs} ms`).toWire() });
      }, w.timeoutMs);
      t.waiters.push(waiter);
      return deferred;
    },
    async shutdown() {
      if (tasks.size > 0) throw err.precondition(`node ${d.settings.node} still holds ${tasks.size} task(s); delete them first`);
      setImmediate(() => d.onShutdown?.());
      return {};
    },
    async pause() { throw err.notImplemented('pause is not implemented by this node'); },
    async resume() { throw err.notImplemented('resume is not implemented by this node'); },
    async exec() { throw err.notImplemented('exec is not implemented by this node'); },
  };

  async function command(body: unknown, msg: Msg, make: (rid: string, at: number) => LifecycleEvent) {
    const t = lookup(taskId(body));
    const rid = randomUUID();
    pending.set(rid, { msg, verb: 'cmd', t0: performance.now() });
    try { await input(t, make(rid, Date.now())); } catch (e) { pending.delete(rid); throw e; }
    return deferred;
  }

  function onWorkerEvent(raw: Uint8Array) {
    let ev: WorkerEvent;
    try { ev = decode(raw) as WorkerEvent; } catch { return; }
    if (!ev || typeof ev !== 'object') return;
    if (ev.kind === 'exit') {
      const t = tasks.get(ev.containerId);
      if (t) void input(t, { type: 'exit', exitStatus: ev.exitStatus, exitedAt: ev.exitedAt }).catch((e) => log.error({ err: e }, 'exit input lost'));
    } else if (ev.kind === 'vmExit') {
      const t = tasks.get(ev.sandboxId);
      if (t) void input(t, { type: 'hostGone', at: ev.at }).catch((e) => log.error({ err: e }, 'vmExit input lost'));
    }
  }

  return {
    tasks,
    start() {
      const prefix = subjects.task(d.settings.node, '*').slice(0, -1);
      subs.push(d.nc.subscribe(subjects.task(d.settings.node, '*'), {
        callback: (e, msg) => {
          if (e) return;
          const verb = msg.subject.slice(prefix.length) as TaskVerb;
          void (async () => {
            try {
              const h = Object.hasOwn(handlers, verb) ? handlers[verb] : undefined;
              if (!h) throw err.invalid(`unknown verb ${JSON.stringify(verb)}; verbs: ${Object.keys(handlers).join(', ')}`);
              const result = await h(decode(msg.data), msg);
              if (result !== deferred) respond(msg, { ok: true, result });
            } catch (x) {
              if (!(x instanceof CorralError)) log.error({ err: x, verb }, 'handler failed');
              respond(msg, { ok: false, error: ensureError(x).toWire() });
            }
          })();
        },
      }));
      subs.push(d.nc.subscribe(subjects.workerEvt(d.settings.node, 'hypervisor', '*', '*'), { callback: (e, m) => { if (!e) onWorkerEvent(m.data); } }));
      void serve; // request/reply helper used by workers; the Task API routes verbs itself
    },
    /** Kill every sandbox, wait for teardown, delete every task: what `corral up` does on Ctrl-C. */
    async teardownAll(timeoutMs: number): Promise<void> {
      const until = Date.now() + timeoutMs;
      const at = () => Date.now();
      for (const t of [...tasks.values()]) {
        const st = stateName(t.actor);
        if (t.kind === 'sandbox' && (st === 'created' || st === 'running')) await input(t, { type: 'kill', rid: 'teardown', signal: 9, all: true, at: at() }).catch(() => {});
      }
      while (tasks.size > 0 && Date.now() < until) {
        for (const t of [...tasks.values()]) {
          const st = stateName(t.actor);
          if (st === 'created' || st === 'running') await input(t, { type: 'kill', rid: 'teardown', signal: 9, all: true, at: at() }).catch(() => {});
          if (st === 'stopped') await input(t, { type: 'delete', rid: 'teardown', at: at() }).catch(() => {});
        }
        await new Promise((r) => setTimeout(r, 200));
      }
      if (tasks.size > 0) throw err.timeout(`teardown left ${tasks.size} task(s): ${[...tasks.keys()].join(', ')}`);
    },
    async stop() {
      for (const s of subs) s.unsubscribe();
      for (const t of tasks.values()) t.actor.stop();
    },
    view: (id: string): TaskView | undefined => { const t = tasks.get(id); return t && taskView(t.actor, t); },
  };
}

export type Agent = ReturnType<typeof buildAgent>;
