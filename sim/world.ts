/**
 * One simulated host: what its workers hold (mounts, dirs, VMM users, VMs, guest processes) as
 * in-memory sets, each op idempotent by its opId (a repeat gets the first outcome), and the Worker API
 * (agent/worker-client.ts's `WorkerClient`) over a simulated bus: a request or its reply may be slow or
 * lost (the caller then times out at its deadline), a worker may fail an op, crash with ops in flight
 * (each done or not, the caller told Unavailable), and be down for a while.
 *
 * It also judges "done once": an op that makes something (a mount, a user, a VM, a process) arriving
 * with a new opId for a thing an earlier opId made is an effect done twice.
 */
import { CorralError, err } from '../src/errors.ts';
import type { OpArgs, OpName, OpResult, WorkerKind } from '../src/domain/ops.ts';
import type { WorkerClient } from '../src/agent/worker-client.ts';
import type { Observed } from '../src/agent/reconcile-decide.ts';
import type { Scheduler } from './sched.ts';
import type { Faults } from './faults.ts';

/** As the real client: NATS answers a little after the worker's own deadline. */
const REPLY_SLACK_MS = 2_000;

type Outcome = { ok: true; v: unknown } | { ok: false; e: CorralError };
export interface ExitFact {
  sandboxId: string;
  containerId: string;
  exitStatus: number;
}

export class World {
  readonly mounts = new Map<string, string>();
  readonly dirs = new Set<string>();
  readonly users = new Map<string, { user: string; uid: number; opId: string }>();
  readonly vms = new Map<string, { pid: number; opId: string }>();
  readonly procs = new Map<string, { sandboxId: string; opId: string }>();
  /** Outcomes by opId (the workers' journals survive their crashes). */
  private readonly done = new Map<string, Outcome>();
  private readonly down = new Map<WorkerKind, number>();
  private readonly inflight = new Map<WorkerKind, Set<() => void>>();
  private n = 0;
  /** Most VMs this host ran at once. */
  maxVms = 0;
  readonly violations: string[] = [];

  constructor(
    readonly node: string,
    readonly runDir: string,
    private readonly s: Scheduler,
    private readonly f: Faults,
    /** A process exited: the worker reports it (the event log, then the agent). */
    private readonly onExit: (e: ExitFact) => void,
  ) {}

  get empty(): boolean {
    return this.mounts.size + this.dirs.size + this.users.size + this.vms.size + this.procs.size === 0;
  }
  leftovers(): string[] {
    return [
      ...[...this.mounts.keys()].map((m) => `mount ${m}`),
      ...[...this.dirs].map((d) => `dir ${d}`),
      ...[...this.users.keys()].map((u) => `user of ${u}`),
      ...[...this.vms.keys()].map((v) => `VM ${v}`),
      ...[...this.procs.keys()].map((p) => `process ${p}`),
    ];
  }

  /** What reconciliation sees (agent/reconcile-decide.ts `Observed`). */
  observe(): Observed {
    const base = `${this.runDir}/sandboxes/`;
    return {
      mounts: [...this.mounts.keys()],
      vms: [...this.vms].map(([sandboxId, v]) => ({ sandboxId, pid: v.pid })),
      users: [...this.users].map(([sandboxId, u]) => ({ name: u.user, uid: u.uid, sandboxId })),
      sandboxDirs: [...this.dirs].filter((d) => d.startsWith(base)).map((d) => d.slice(base.length).split('/')[0]!),
    };
  }

  /** The worker process of `kind` dies: its ops in flight end (done or not), it is back after `forMs`. */
  crashWorker(kind: WorkerKind, forMs: number): void {
    this.down.set(kind, this.s.now + forMs);
    for (const abort of [...(this.inflight.get(kind) ?? [])]) abort();
  }

  /** Do an op on the host (idempotent by opId). */
  private apply(kind: WorkerKind, op: string, a: Record<string, unknown>, opId: string | undefined): Outcome {
    const had = opId === undefined ? undefined : this.done.get(opId);
    if (had) return had;
    let o: Outcome;
    try {
      o = { ok: true, v: this.effect(kind, op, a, opId ?? 'read') };
    } catch (e) {
      o = { ok: false, e: e instanceof CorralError ? e : err.internal(String(e)) };
    }
    if (opId !== undefined) this.done.set(opId, o);
    return o;
  }

  /** Something made under `opId`; made before under another opId is the same effect done twice. */
  private made<V extends { opId: string }>(what: string, m: Map<string, V>, key: string, v: V): void {
    const had = m.get(key);
    if (had && had.opId !== v.opId)
      this.violations.push(`effect done twice: ${what} ${key} made by ${had.opId} and again by ${v.opId}`);
    m.set(key, v);
  }

  private effect(kind: WorkerKind, op: string, a: Record<string, unknown>, opId: string): unknown {
    const failing = this.f.opFails(kind, op);
    if (failing) throw failing;
    const str = (k: string) => String(a[k]);
    const below = (p: string) => (x: string) => x === p || x.startsWith(p + '/');
    switch (`${kind}.${op}`) {
      case 'mount.mkdir': {
        const created = !this.dirs.has(str('path'));
        this.dirs.add(str('path'));
        return { created };
      }
      case 'mount.mountRootfs':
      case 'mount.bind': {
        const had = this.mounts.get(str('target'));
        if (had && had !== opId)
          this.violations.push(`effect done twice: mount ${str('target')} by ${had} and again by ${opId}`);
        this.mounts.set(str('target'), opId);
        return op === 'bind' ? { createdDir: true } : { mounted: 1, createdDir: true };
      }
      case 'mount.unmountAll': {
        const gone = [...this.mounts.keys()].filter(below(str('target')));
        for (const m of gone) this.mounts.delete(m);
        return { unmounted: gone.length, lazy: false, removedDir: a.removeDir === true };
      }
      case 'mount.removeTree': {
        for (const d of [...this.dirs].filter(below(str('path')))) this.dirs.delete(d);
        return { removed: true };
      }
      case 'mount.scan':
        return { mounts: [...this.mounts.keys()].map((target) => ({ target, fstype: 'sim', source: 'sim' })) };
      case 'hypervisor.createUser': {
        const uid = 20_000 + ++this.n;
        const u = { user: `corral-${uid}`, uid, opId };
        this.made('user of', this.users, str('sandboxId'), u);
        return { user: u.user, uid, gid: uid, groups: [], runtimeDir: `/run/user/${uid}` };
      }
      case 'hypervisor.removeUser': {
        for (const [sb, u] of [...this.users]) if (a.sandboxId === sb || a.user === u.user) this.users.delete(sb);
        return { removed: true };
      }
      case 'hypervisor.boot': {
        const pid = 40_000 + ++this.n;
        this.made('VM', this.vms, str('sandboxId'), { pid, opId });
        this.maxVms = Math.max(this.maxVms, this.vms.size);
        return { pid, accel: 'tcg', bootMs: 5 };
      }
      case 'hypervisor.stop': {
        const stopped = this.vms.delete(str('sandboxId'));
        for (const [c, p] of [...this.procs]) if (p.sandboxId === str('sandboxId')) this.procs.delete(c);
        return { stopped };
      }
      case 'hypervisor.startProcess': {
        if (!this.vms.has(str('sandboxId'))) throw err.notFound(`no VM for sandbox ${str('sandboxId')}`);
        this.made('process', this.procs, str('containerId'), { sandboxId: str('sandboxId'), opId });
        return { started: true };
      }
      case 'hypervisor.signal': {
        const p = this.procs.get(str('containerId'));
        if (!p) return { delivered: false };
        this.s.at(this.s.between(1, 50), `${this.node}: process ${str('containerId')} exits`, () => {
          if (this.procs.get(str('containerId')) !== p) return;
          this.procs.delete(str('containerId'));
          this.onExit({ sandboxId: p.sandboxId, containerId: str('containerId'), exitStatus: 128 + Number(a.signal) });
        });
        return { delivered: true };
      }
    }
    throw err.internal(`the simulator has no ${kind}.${op}`);
  }

  /**
   * The Worker API as one agent incarnation sees it: nothing of a crashed incarnation (`alive()` false)
   * is answered any more.
   */
  client(alive: () => boolean): WorkerClient {
    const send = (kind: WorkerKind, op: string, args: object, opId: string | undefined, waitMs: number) =>
      new Promise<unknown>((resolve, reject) => {
        const s = this.s;
        let over = false;
        const end = (f: () => void) => {
          if (over) return;
          over = true;
          this.inflight.get(kind)?.delete(abort);
          s.cancel(timer);
          if (alive()) f();
        };
        const timer = s.at(waitMs, '', () =>
          end(() => reject(err.timeout(`${kind}.${op} not answered within ${waitMs} ms (simulated)`))),
        );
        const abort = () => {
          if (s.chance(0.5)) this.apply(kind, op, args as Record<string, unknown>, opId);
          s.at(s.between(1, 20), `${this.node}: ${kind} worker died during ${op}`, () =>
            end(() => reject(err.unavailable(`${kind} worker died during ${op}`))),
          );
        };
        if ((this.down.get(kind) ?? -1) > s.now)
          return void s.at(s.between(1, 5), '', () => end(() => reject(err.unavailable(`no ${kind} worker`))));
        let set = this.inflight.get(kind);
        if (!set) this.inflight.set(kind, (set = new Set()));
        set.add(abort);
        const { requestLost, replyLost, delay } = this.f.message();
        if (requestLost) return;
        s.at(delay, `${this.node}: ${kind}.${op} ${opId ?? ''}`, () => {
          if (over) return;
          const o = this.apply(kind, op, args as Record<string, unknown>, opId);
          if (replyLost) return;
          s.at(this.f.message().delay, '', () => end(() => (o.ok ? resolve(o.v) : reject(o.e))));
        });
      });
    return {
      call: async <K extends WorkerKind, O extends OpName<K>>(
        kind: K,
        op: O,
        args: OpArgs<K, O>,
        o: { opId: string; deadlineMs: number; signal: AbortSignal },
      ): Promise<OpResult<K, O>> => {
        if (o.signal.aborted) throw err.cancelled(`${op} cancelled`);
        const opId = this.f.mutate.opId(o.opId);
        if (this.f.mutate.skipCompensation(kind, op)) return {};
        return await send(kind, op, args, opId, o.deadlineMs + REPLY_SLACK_MS);
      },
      read: async <K extends WorkerKind, O extends OpName<K>>(kind: K, op: O, args: OpArgs<K, O>) =>
        await send(kind, op, args, undefined, 10_000),
    };
  }
}
