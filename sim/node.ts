/**
 * One simulated node: a host (world.ts), its event log (log.ts) and the agent, composed from the
 * REAL parts (agent/task-runtime.ts with the machines, task-api.ts, dispatch.ts with the request
 * ledger, recovery.ts, reconcile.ts) on the simulator's ports. The agent can crash between any two
 * simulated events: that incarnation is gone (nothing it had in flight is answered or appended any
 * more), and a new one starts after a while: it recovers from the log, reconciles the host, serves.
 *
 * What the agent's start does here is what `corral agent` does (cli/commands/agent.ts): recover, then
 * reconcile against the live sandboxes, then serve the Task API and take worker facts.
 */
import { pino } from 'pino';
import { CorralError, err } from '../src/errors.ts';
import type { Envelope } from '../src/bus/rpc.ts';
import type { CreatePlan } from '../src/domain/task.ts';
import type { WorkerEvent } from '../src/domain/ops.ts';
import { taskDispatch, type TaskDispatch } from '../src/agent/dispatch.ts';
import { RequestLedger } from '../src/agent/idempotency.ts';
import { createMetrics } from '../src/agent/metrics.ts';
import { reconcile } from '../src/agent/reconcile.ts';
import { recover } from '../src/agent/recovery.ts';
import { loadSettings } from '../src/agent/settings.ts';
import { taskApi } from '../src/agent/task-api.ts';
import { TaskRuntime } from '../src/agent/task-runtime.ts';
import type { CreateRules } from '../src/agent/create-rules.ts';
import { parseSpec } from '../src/kata/oci.ts';
import { SimLog } from './log.ts';
import { World, type ExitFact } from './world.ts';
import type { Faults } from './faults.ts';
import type { Scheduler } from './sched.ts';

/** One copy of a request as the bus delivers it. */
export interface SimMsg {
  n: number;
  verb: string;
  body: Record<string, unknown>;
  /** Every answer this copy got (more than one is a bug). */
  answers: Envelope<unknown>[];
  /** `gen`: the agent incarnation that answered. */
  onAnswer: (env: Envelope<unknown>, gen: number) => void;
}

const SPEC = parseSpec(
  JSON.stringify({
    ociVersion: '1.0.2',
    process: { args: ['sh'], cwd: '/' },
    root: { path: 'rootfs' },
    linux: { resources: {}, namespaces: [] },
  }),
);

/** Kata's rules reduced to one plan shape (the real rules read bundles from disk: not simulated). */
function simRules(runDir: string): CreateRules {
  const plan = (id: string, bundle: string): CreatePlan => ({
    type: 'single_container',
    sandboxId: id,
    bundle,
    vcpus: 1,
    memoryMiB: 256,
    process: { args: ['sh'], env: [], cwd: '/', uid: 0, gid: 0, additionalGids: [], terminal: false },
    steps: [
      { phase: 'mounting', kind: 'mkdir', args: { path: `${runDir}/sandboxes/${id}`, mode: 0o750 } },
      { phase: 'mounting', kind: 'mountRootfs', args: { target: `${bundle}/rootfs`, mounts: [] } },
      {
        phase: 'mounting',
        kind: 'bind',
        args: { source: `${bundle}/rootfs`, target: `${runDir}/sandboxes/${id}/rootfs` },
      },
      { phase: 'preparingUser', kind: 'createUser', args: { sandboxId: id } },
      {
        phase: 'booting',
        kind: 'boot',
        args: {
          sandboxId: id,
          vcpus: 1,
          memoryMiB: 256,
          kernel: '/k',
          initrd: '/i',
          kernelParams: '',
          machineType: 'microvm',
          accel: 'auto',
          sharedDir: `${runDir}/sandboxes/${id}`,
          msize9p: 512000,
          runDir,
        },
      },
    ],
  });
  return {
    checkId: (id) => {
      if (!/^[a-z0-9-]{1,64}$/.test(id)) throw err.invalid(`bad id ${JSON.stringify(id)}`);
    },
    classify: async (req) => ({ type: 'single_container', sandboxId: req.id }),
    validate: async (req) => ({ type: 'single_container', sandboxId: req.id, bundle: req.bundle, spec: SPEC }),
    configure: async (req) => plan(req.id, req.bundle),
  };
}

interface Incarnation {
  gen: number;
  rt: TaskRuntime;
  ledger: RequestLedger<SimMsg>;
  dispatch: TaskDispatch<SimMsg>;
  serving: boolean;
  /** Worker facts waiting for the agent to serve (a durable consumer delivers them then). */
  facts: WorkerEvent[];
}

export class SimNode {
  readonly world: World;
  readonly log: SimLog;
  readonly settings;
  private inc: Incarnation | undefined;
  private gen = 0;
  crashes = 0;
  /** The registry's side of this node (release of a task's reservation); set by the fleet. */
  release: (id: string) => Promise<unknown> = async () => undefined;
  /** The registry's side of this node: drop reservations of tasks it does not hold, made before `before`. */
  prune: (live: string[], before: number) => void = () => undefined;
  readonly errors: string[] = [];

  constructor(
    readonly name: string,
    private readonly s: Scheduler,
    private readonly f: Faults,
  ) {
    this.settings = loadSettings(
      { node: name },
      { CORRAL_RUN_DIR: `/sim/${name}/run`, CORRAL_DATA_DIR: `/sim/${name}` },
    );
    this.log = new SimLog(name, s);
    this.world = new World(name, this.settings.runDir, s, f, (e) => this.workerFact(e));
  }

  get up(): boolean {
    return this.inc?.serving === true;
  }
  get tasks(): TaskRuntime['tasks'] | undefined {
    return this.inc?.rt.tasks;
  }
  get ledgerSize() {
    return this.inc?.ledger.size;
  }

  /** Start an agent incarnation: recover, reconcile, serve. A start that fails is retried (systemd). */
  boot(): void {
    const gen = ++this.gen;
    const alive = () => this.gen === gen;
    const workers = this.world.client(alive);
    const events = this.log.appender(alive);
    const rt = new TaskRuntime({
      settings: this.settings,
      rules: simRules(this.settings.runDir),
      events,
      log: pino({ level: 'silent' }),
      metrics: createMetrics(),
      workers,
      readLog: () => this.log.read(),
      inlineBundleRoot: `/sim/${this.name}/bundles`,
      registration: {
        release: ({ id }) => (alive() && !this.f.mutate.keepReservation() ? this.release(id) : Promise.resolve()),
        hold: () => undefined,
      },
    });
    const ledger = new RequestLedger<SimMsg>((msg, env) => this.answer(msg, env, alive));
    const inc: Incarnation = {
      gen,
      rt,
      ledger,
      dispatch: taskDispatch(taskApi(rt), ledger, rt.d.log),
      serving: false,
      facts: [],
    };
    this.inc = inc;
    this.s.note(`${this.name}: agent starts (incarnation ${gen})`);
    void (async () => {
      await recover(rt, ledger);
      const live = new Set(rt.tasks.values().map((t) => t.sandboxId));
      const log = rt.d.log;
      await reconcile(
        { workers, settings: this.settings, events, log, observe: async () => this.world.observe() },
        live,
      );
      if (!alive()) return;
      inc.serving = true;
      this.prune(rt.tasks.ids(), Date.now() - 60_000); // as agent.ts: registration.reconcile(tasks) at start
      this.s.note(`${this.name}: agent serves (${rt.tasks.size} task(s) recovered)`);
      for (const ev of inc.facts.splice(0)) this.feed(inc, ev);
    })().catch((e: unknown) => {
      if (!alive()) return;
      this.s.note(`${this.name}: agent start failed (${(e as Error).message}); restarted`);
      this.crash(this.s.between(100, 1000));
    });
  }

  /** A heartbeat of the serving agent that prunes reservations it does not hold, older than 300 s. */
  heartbeatPrune(): void {
    if (this.inc?.serving) this.prune(this.inc.rt.tasks.ids(), Date.now() - 300_000);
  }

  /** The agent process dies now; a new one starts after `restartMs`. */
  crash(restartMs: number): void {
    const inc = this.inc;
    this.gen++;
    this.inc = undefined;
    this.crashes++;
    this.s.note(`${this.name}: agent crashes`);
    for (const t of inc?.rt.tasks.values() ?? []) t.actor.stop();
    this.s.at(restartMs, '', () => this.boot());
  }

  /** A copy of a request reaches the node: false (no responders) while no agent serves. */
  deliver(msg: SimMsg): boolean {
    const inc = this.inc;
    if (!inc?.serving) return false;
    const gen = inc.gen;
    const alive = () => this.gen === gen;
    const reply = (env: Envelope<unknown>) => this.answer(msg, env, alive);
    inc
      .dispatch(msg.verb, msg.body, { msg, reply })
      .catch((e: unknown) =>
        reply({ ok: false, error: (e instanceof CorralError ? e : err.internal(String(e))).toWire() }),
      );
    return true;
  }

  private answer(msg: SimMsg, env: Envelope<unknown>, alive: () => boolean): void {
    if (!alive()) return;
    const gen = this.gen;
    const { replyLost, delay } = this.f.message();
    if (replyLost) return;
    const copies = this.f.mutate.doubleReply() ? 2 : 1;
    for (let i = 0; i < copies; i++) this.s.at(delay + i, '', () => msg.onAnswer(env, gen));
  }

  /** The hypervisor worker reports an exit: into the log (it retries until stored), then to the agent. */
  private workerFact(e: ExitFact): void {
    const ev: WorkerEvent = { kind: 'exit', ...e, exitedAt: Date.now() };
    const store = (): void =>
      void this.log
        .appender(() => true)
        .append(e.sandboxId, 'worker', { event: ev })
        .then(
          () => {
            const inc = this.inc;
            if (inc?.serving) this.feed(inc, ev);
            else inc?.facts.push(ev);
          },
          () => void this.s.at(500, '', store),
        );
    store();
  }

  private feed(inc: Incarnation, ev: WorkerEvent): void {
    // Not taken in (its input not journaled): the durable consumer delivers it again a second later.
    inc.rt.feedWorkerEvent(ev).catch(() =>
      this.s.at(1000, '', () => {
        if (this.inc === inc) this.feed(inc, ev);
      }),
    );
  }
}
