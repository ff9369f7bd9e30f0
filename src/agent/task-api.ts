/**
 * The node's Task API (docs/api.md): one handler per verb, each validating its body at the edge
 * (requests.ts). Verbs a machine answers (create, start, kill, delete, wait) register the request
 * and return LATER; the rest answer at once. Every reply is the `{ok, result | error}` envelope.
 */
import { randomUUID } from 'node:crypto';
import { err } from '../errors.ts';
import { LATER } from '../bus/serve.ts';
import { hasTag, stateName, type LifecycleEvent } from '../machines/index.ts';
import type { TaskRuntime } from './task-runtime.ts';
import { parseCreate, parseKill, parseProcessRef, parseWait, taskId } from '../bus/task-requests.ts';
import { processVerbs } from './process-verbs.ts';
import type { ReplyTo, Waiter } from './task-table.ts';
import { execView, taskView } from './views.ts';
import { removeInlineBundle, writeInlineBundle } from './inline-bundle.ts';
import { activeTraceparent } from '../util/trace.ts';
import { appendStored } from './append-stored.ts';

export type VerbHandler = (body: unknown, reply: ReplyTo) => Promise<unknown>;

/**
 * A fleet create's spec and placement, recorded with its create input (the bundle path is this node's
 * alone): what `corral fleet drain --policy recreate` sends to the fleet again.
 */
function inlineOf(body: unknown): { inline?: { spec: unknown; placement: unknown } } {
  const o = body as { spec?: unknown; placement?: unknown };
  return o.spec && typeof o.spec === 'object' ? { inline: { spec: o.spec, placement: o.placement ?? {} } } : {};
}

const requestIdOf = (body: unknown) => {
  const r = (body as { requestId?: unknown } | null)?.requestId;
  return typeof r === 'string' ? r : undefined;
};

export function taskApi(rt: TaskRuntime, onShutdown?: () => void): Record<string, VerbHandler> {
  const { d, tasks } = rt;

  async function create(body: unknown, reply: ReplyTo, after?: (ok: boolean) => void): Promise<typeof LATER> {
    const req = parseCreate(body);
    d.rules.checkId(req.id);
    if (tasks.has(req.id)) throw err.exists(`task ${req.id} already exists`);
    const cls = await d.rules.classify(req);
    if (cls.type === 'pod_container') {
      const sb = tasks.get(cls.sandboxId);
      if (!sb || sb.kind !== 'sandbox')
        throw err.notFound(`sandbox ${cls.sandboxId} of container ${req.id} does not exist on node ${d.settings.node}`);
      if (!hasTag(sb.actor, 'created') && !hasTag(sb.actor, 'running'))
        throw err.precondition(
          "BUG: Cannot start the container, since the sandbox hasn't been created " +
            `(sandbox ${cls.sandboxId} is ${stateName(sb.actor)})`,
        );
    }
    if (tasks.has(req.id)) throw err.exists(`task ${req.id} already exists`); // again: classify awaited
    const rid = randomUUID();
    const sandboxId = cls.type === 'pod_container' ? cls.sandboxId : req.id;
    rt.expect(rid, { reply, verb: 'create', t0: performance.now(), after });
    const trace = activeTraceparent(); // recorded with the input: recovery links its span to this request's
    const t = rt.spawn(req.id, cls.type === 'pod_container' ? 'container' : 'sandbox', sandboxId, req, rid);
    try {
      await appendStored(
        d.events,
        sandboxId,
        'input',
        {
          taskId: req.id,
          requestId: (body as { requestId?: string }).requestId,
          ...inlineOf(body),
          ...(trace ? { trace } : {}),
          event: { type: 'create', rid, request: req, containerType: cls.type, machine: t.kind, instance: t.instance },
        },
        {
          onRetry: (e) =>
            d.log.warn({ err: e, taskId: req.id }, 'create input not stored in the event log; trying again'),
        },
      );
    } catch (e) {
      tasks.forget(t);
      rt.forget(rid);
      throw e;
    }
    d.probe?.('after:create-input');
    t.actor.start();
    return LATER;
  }

  /** A command the machine answers: journaled (write-ahead), then fed to the actor. */
  async function command(
    body: unknown,
    reply: ReplyTo,
    make: (rid: string, at: number) => LifecycleEvent,
  ): Promise<typeof LATER> {
    const t = tasks.lookup(taskId(body));
    const rid = randomUUID();
    rt.expect(rid, { reply, verb: 'command', t0: performance.now() });
    try {
      // The requestId goes with the input: a delete's repeat after a restart gets its outcome (recovery.ts).
      await rt.input(t, make(rid, Date.now()), requestIdOf(body));
    } catch (e) {
      rt.forget(rid);
      throw e;
    }
    // The actor finished (deleted, or its create failed) while the input was being stored: it takes
    // nothing more, so the request would never be answered.
    if (t.actor.getSnapshot().status !== 'active' && rt.expects(rid)) {
      rt.forget(rid);
      throw err.notFound(`task ${t.id} ended (${stateName(t.actor)}) before this request reached it`);
    }
    return LATER;
  }

  return {
    create: (body, reply) => create(body, reply),
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
      const res = o.reservation as { vcpus: number; memoryMiB: number; ref: string } | null | undefined;
      try {
        return await create({ ...o, bundle }, reply, (ok) => {
          if (!ok) remove();
          else if (res && typeof res === 'object') d.registration?.hold(id, res); // its reservation is this node's now
        });
      } catch (e) {
        remove();
        throw e;
      }
    },
    start: (body, reply) => {
      const { execId } = parseProcessRef(body);
      return command(body, reply, (rid, at) =>
        execId ? { type: 'execStart', rid, at, execId } : { type: 'start', rid, at },
      );
    },
    delete: (body, reply) => {
      const { execId } = parseProcessRef(body);
      return command(body, reply, (rid, at) =>
        execId ? { type: 'execDelete', rid, at, execId } : { type: 'delete', rid, at },
      );
    },
    kill: (body, reply) => {
      const k = parseKill(body);
      // Kata: the init process of a task is always signalled with all=true: every process of the container.
      return command(body, reply, (rid, at) =>
        k.execId
          ? { type: 'execKill', rid, at, execId: k.execId, signal: k.signal, all: k.all }
          : { type: 'kill', rid, at, signal: k.signal, all: true },
      );
    },
    state: async (body) => {
      const { id, execId } = parseProcessRef(body);
      const t = tasks.lookup(id);
      return execId ? execView(t.actor, execId) : taskView(t.actor, t);
    },
    pids: async (body) => ({ pids: [{ pid: tasks.lookup(taskId(body)).actor.getSnapshot().context.pid }] }),
    list: async () => ({ tasks: tasks.values().map((t) => taskView(t.actor, t)) }),
    async wait(body, reply) {
      const w = parseWait(body);
      const t = tasks.lookup(w.id);
      if (w.execId) {
        const e = execView(t.actor, w.execId);
        if (e.status === 'stopped') return { exitStatus: e.exitStatus, exitedAt: e.exitedAt };
      } else if (hasTag(t.actor, 'stopped')) {
        const v = taskView(t.actor, t);
        return { exitStatus: v.exitStatus, exitedAt: v.exitedAt };
      }
      const waiter: Waiter = { reply, ...(w.execId ? { execId: w.execId } : {}) };
      if (w.timeoutMs > 0)
        waiter.timer = setTimeout(() => {
          t.waiters.splice(t.waiters.indexOf(waiter), 1);
          reply({ ok: false, error: err.timeout(`task ${w.id} did not exit within ${w.timeoutMs} ms`).toWire() });
        }, w.timeoutMs);
      t.waiters.push(waiter);
      return LATER;
    },
    async shutdown() {
      if (tasks.size > 0)
        throw err.precondition(`node ${d.settings.node} still holds ${tasks.size} task(s); delete them first`);
      setImmediate(() => onShutdown?.());
      return {};
    },
    ...processVerbs(rt, command),
  };
}
