/** `corral agent`: the node's agent; with --spawn-workers it also runs and supervises both workers. */
import { connectNats } from '../../bus/connection.ts';
import { ensureEventStream, EventLog } from '../../bus/eventlog.ts';
import { readRecords } from '../../bus/eventlog-reader.ts';
import { Snapshots } from '../../bus/snapshots.ts';
import { runRetention } from '../../bus/retention.ts';
import { request } from '../../bus/rpc.ts';
import { retrying } from '../../bus/retry.ts';
import { subjects } from '../../bus/subjects.ts';
import { WORKER_KINDS, type WorkerKind } from '../../domain/ops.ts';
import { ensureError, err } from '../../errors.ts';
import { buildAgent } from '../../agent/agent.ts';
import { createRules } from '../../agent/create-rules.ts';
import { reconcile } from '../../agent/reconcile.ts';
import { startManagement } from '../../agent/http.ts';
import { createMetrics } from '../../agent/metrics.ts';
import { checkRunDir, loadSettings, type Settings } from '../../agent/settings.ts';
import { selfCommand, Supervisor } from '../../agent/supervisor.ts';
import { WorkerWatch } from '../../agent/worker-watch.ts';
import { probeWorker } from '../../agent/worker-probe.ts';
import { liveWorker } from '../../workers/pidfile.ts';
import { faultsEnabled } from '../../workers/faults.ts';
import { AgentRegistration } from '../../fleet/agent-registration.ts';
import { poolCapacity } from '../../agent/pool-capacity.ts';
import { primePool } from '../../agent/pool-prime.ts';

export { parseCapacity, parseLabels } from './agent-flags.ts';
import { parseCapacity, parseLabels } from './agent-flags.ts';
import { rootLogger } from '../../log.ts';
import { parseDuration } from '../../util/duration.ts';
import { crashProbe } from '../../agent/crash-points.ts';
import { parse } from '../args.ts';
import type { Io } from '../io.ts';

export const SETTINGS_OPTS = {
  'data-dir': { type: 'string' },
  'run-dir': { type: 'string' },
  'bundle-root': { type: 'string', multiple: true },
  'config-root': { type: 'string', multiple: true },
  metrics: { type: 'string' },
  'log-level': { type: 'string' },
  'event-retention': { type: 'string' },
  creds: { type: 'string' },
  replicas: { type: 'string' },
} as const;

export function settingsFrom(
  argv: string[],
  io: Io,
  extra: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = {},
) {
  const p = parse(argv, { ...SETTINGS_OPTS, ...extra });
  const v = p.values;
  const settings = loadSettings(
    {
      node: v.node as string,
      nats: v.nats as string,
      dataDir: v['data-dir'] as string,
      runDir: v['run-dir'] as string,
      bundleRoot: v['bundle-root'] as string[],
      configRoot: v['config-root'] as string[],
      metrics: v.metrics as string,
      logLevel: v['log-level'] as string,
      eventRetention: v['event-retention'] as string,
      creds: v.creds as string,
      replicas: v.replicas as string,
    },
    io.env,
  );
  return { p, settings };
}

/** Flags that hand the same settings to a child process. */
export function settingsArgs(s: Settings): string[] {
  return [
    '--node',
    s.node,
    '--nats',
    s.natsUrl,
    '--data-dir',
    s.dataDir,
    '--run-dir',
    s.runDir,
    '--log-level',
    s.logLevel,
    ...s.bundleRoots.flatMap((r) => ['--bundle-root', r]),
    ...s.configRoots.flatMap((r) => ['--config-root', r]),
    ...(s.credsFile ? ['--creds', s.credsFile] : []),
  ];
}

/** Resolves once the worker answers its read-only `scan` op. */
export async function waitForWorker(
  nc: Parameters<typeof request>[0],
  node: string,
  kind: WorkerKind,
  timeoutMs: number,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      await request(nc, subjects.worker(node, kind, 'scan'), {}, 2000);
      return;
    } catch (e) {
      if (Date.now() > until)
        throw err.unavailable(`${kind} worker did not become ready in ${timeoutMs} ms: ${(e as Error).message}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

export async function agentCommand(argv: string[], io: Io): Promise<number> {
  const { p, settings } = settingsFrom(argv, io, {
    'spawn-workers': { type: 'boolean' },
    'teardown-on-exit': { type: 'boolean' },
    label: { type: 'string', multiple: true },
    capacity: { type: 'string' },
    'prune-unheld-after': { type: 'string' },
  });
  checkRunDir(settings.runDir);
  const labels = parseLabels(
    (p.values.label as string[] | undefined) ?? (io.env.CORRAL_LABELS ? io.env.CORRAL_LABELS.split(',') : []),
  );
  const capacity = parseCapacity((p.values.capacity as string | undefined) ?? io.env.CORRAL_CAPACITY);
  const log = rootLogger({ name: 'corral-agent', level: settings.logLevel });
  // The phases of this start (corral_recovery_phase_seconds): `start` is process start to the first NATS call.
  const phases: Record<string, number> = { start: performance.now() };
  const nc = await connectNats(settings.natsUrl, `corral-agent-${settings.node}`, {
    nkeySeedFile: settings.credsFile,
    noAsyncTraces: true,
  });
  // JetStream may still be electing its leaders (a cluster that is starting, a server restarting): retry.
  await untilReady('the event stream', () => ensureEventStream(nc, { replicas: settings.replicas }));
  // Recovery's read starts here, while the rest is set up (meanwhile only workers append: their facts are redelivered).
  const logRead = readRecords(nc, { node: settings.node });
  logRead.catch(() => undefined); // awaited by recovery (agent.recover), which throws a failure
  const metrics = createMetrics();
  const events = new EventLog(nc, settings.node, { log });
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));
  const watch = new WorkerWatch();
  const probe = crashProbe(faultsEnabled(io.env) ? io.env.CORRAL_TEST_CRASH : undefined);
  const snapshots = await untilReady('the snapshot bucket', () =>
    Snapshots.open(nc, settings.node, settings.replicas, (taskId, e) =>
      log.warn({ err: e, taskId }, 'snapshot of a deleted task not purged'),
    ),
  );
  // The node's entry in the fleet registry: capacity, labels, heartbeat (docs/api.md, Fleet).
  const registration = await untilReady('the node registry', () =>
    AgentRegistration.open(nc, {
      node: settings.node,
      labels,
      capacity,
      simulated: io.env.CORRAL_SIMULATE_VMS === '1',
      replicas: settings.replicas,
      onError: (e) => log.warn({ err: e }, 'fleet heartbeat failed'),
      // This agent holds every sandbox on its node: a reservation it does not hold after 5 min (the
      // controller's default node timeout; shorter only with a controller whose timeout is too) was lost.
      pruneUnheldAfterMs: parseDuration(p.values['prune-unheld-after'] as string, '--prune-unheld-after', 300_000),
    }),
  );
  const agent = buildAgent({
    nc,
    settings,
    rules: createRules(settings),
    events,
    log,
    metrics,
    watch,
    probe,
    snapshots,
    registration,
    readLog: () => logRead,
    inlineBundleRoot: `${settings.dataDir}/bundles/fleet`,
    onShutdown: () => void shutdown('shutdown request'),
  });
  const byStatus = () => {
    const values: Record<string, number> = {};
    for (const id of agent.tasks.ids()) {
      const s = agent.view(id)?.status ?? 'unknown';
      values[s] = (values[s] ?? 0) + 1;
    }
    return { label: 'status', values };
  };
  const mgmt = await startManagement(settings.metricsAddr, () =>
    metrics.render({ corral_tasks: agent.tasks.size, corral_tasks_by_status: byStatus() }),
  );

  phases.setup = performance.now() - phases.start!;
  const w0 = performance.now();
  let sup: Supervisor | undefined;
  // From here on a signal must not end the agent at once: the workers it starts would outlive it. One that
  // comes during the start is acted on once the start is done; a second one ends the process (once()).
  let serving = false;
  let pending: string | undefined;
  const onSignal = (sig: string) => {
    if (serving) return void shutdown(sig);
    pending = sig;
    log.warn({ signal: sig }, 'stopping once the start is done (send it again to stop at once)');
  };
  process.once('SIGINT', () => onSignal('SIGINT'));
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  if (p.values['spawn-workers']) {
    const self = selfCommand();
    sup = new Supervisor({
      onStart: (name, pid) => log.info({ worker: name, pid }, 'worker started'),
      onExit: (name, code, signal) => {
        log.warn({ worker: name, code, signal }, 'worker exited; restarting');
        watch.died(name as WorkerKind, `exit ${code ?? signal}`);
      },
      onGiveUp: (name) => {
        log.error({ worker: name }, 'worker keeps crashing; giving up');
        void shutdown('worker restart intensity exceeded', 1);
      },
    });
    // A worker that outlived a previous agent (killed, restarted) keeps its VMs and mounts: adopt it. Its pidfile
    // names it (the host's answer, whatever NATS can tell at this moment); a worker without one (an older version)
    // is found by its ping. The kinds are asked at once; one that answered its ping is serving, any other is waited
    // for.
    const held = WORKER_KINDS.map((kind) => liveWorker(settings.runDir, kind));
    const probes = await Promise.all(
      WORKER_KINDS.map((kind, i) =>
        held[i] !== undefined ? Promise.resolve(undefined) : probeWorker(nc, settings.node, kind),
      ),
    );
    /** The workers to wait for: those started here, and those adopted by their pidfile (`pid`). */
    const awaited: { kind: WorkerKind; pid?: number }[] = [];
    for (const [i, kind] of WORKER_KINDS.entries()) {
      const spec = {
        name: kind,
        command: self.command,
        args: [...self.prefix, 'worker', kind, ...settingsArgs(settings)],
      };
      const probe = probes[i];
      const pid = held[i] ?? probe?.pid;
      if (pid !== undefined) {
        log.info({ worker: kind, pid, by: held[i] ? 'pidfile' : 'ping' }, 'adopting a running worker');
        sup.adopt(spec, pid);
        if (held[i]) awaited.push({ kind, pid });
      } else {
        if (probe?.pid === undefined && probe?.reason === 'silent')
          log.warn({ worker: kind }, 'a worker is subscribed but never answered; starting one');
        sup.add(spec);
        awaited.push({ kind });
      }
    }
    try {
      await Promise.all(
        awaited.map(({ kind, pid }) =>
          waitForWorker(nc, settings.node, kind, 30_000).catch((e: unknown) => {
            if (pid === undefined) throw e;
            const why = ensureError(e).message;
            throw err.unavailable(`the ${kind} worker its pidfile names (pid ${pid}) runs but does not answer: ${why}`);
          }),
        ),
      );
    } catch (e) {
      await sup.stop(); // a start that fails leaves no worker behind
      throw e;
    }
  }
  const r0 = performance.now();
  phases.workers = r0 - w0;
  const recovered = await agent.recover();
  metrics.recovered(performance.now() - r0, recovered.tasks);
  Object.assign(phases, recovered.phases);
  const c0 = performance.now();
  if (recovered.tasks > 0 || recovered.resumed.length > 0) log.info(recovered, 'recovered tasks from the event log');
  if (
    p.values['spawn-workers'] ||
    (await request(nc, subjects.worker(settings.node, 'mount', '__ping'), {}, 1000).then(
      () => true,
      () => false,
    ))
  ) {
    const live = new Set([...agent.tasks.values()].map((t) => t.sandboxId));
    const orphans = await reconcile({ workers: agent.workers, settings, events, log }, live).catch((e) => {
      log.error({ err: e }, 'reconciliation failed');
      return [];
    });
    metrics.leaks(orphans.length);
    for (const o of orphans) log.warn({ orphan: o.action, cleaned: o.ok }, 'orphan found on the host');
  }
  phases.reconcile = performance.now() - c0;
  // Serve before registering: a controller places on a node as soon as the registry says it is ready.
  agent.start();
  await nc.flush(); // the server has the Task API's subscription
  metrics.startPhases({ ...phases, serve: performance.now() });
  await registration.register();
  // Pool VMs take capacity too (held before the reconcile below, which keeps what is held).
  const pooled = poolCapacity(agent.workers, registration, settings.node, log);
  await pooled.start();
  void primePool(settings, agent.workers, log); // the default config's pool, if it asks for one (never throws)
  await registration
    .reconcile((id) => agent.tasks.has(id))
    .catch((e) => log.warn({ err: e }, 'fleet reservations not reconciled'));
  // History of deleted sandboxes goes once the retention period has passed (docs/decisions/0005).
  const janitor = () =>
    runRetention(nc, {
      retentionMs: settings.eventRetentionMs,
      node: settings.node,
      onUndecodable: (seq, subject, e) => log.warn({ err: e, seq, subject }, 'event record does not decode; skipped'),
    }).then(
      (r) => {
        if (r && (r as { purged?: unknown[] }).purged?.length)
          log.info({ retention: r }, 'purged expired sandbox history');
      },
      (e) => log.warn({ err: e }, 'retention pass failed'),
    );
  void janitor();
  const janitorTimer = setInterval(() => void janitor(), 3600_000);
  janitorTimer.unref();
  log.info({ node: settings.node, nats: settings.natsUrl, metrics: `${mgmt.url}/metrics` }, 'agent ready');
  io.err(`corral agent ready: node ${settings.node}, NATS ${settings.natsUrl}, metrics ${mgmt.url}/metrics`);

  let stopping = false;
  async function shutdown(why: string, code = 0) {
    if (stopping) return;
    stopping = true;
    log.info({ why }, 'agent stopping');
    try {
      if (p.values['teardown-on-exit'])
        await agent.teardownAll(60_000).catch((e) => log.error({ err: e }, 'teardown incomplete'));
      await agent.stop();
      pooled.stop();
      registration.stop();
    } catch (e) {
      log.error({ err: e }, 'agent stop incomplete');
    } finally {
      await sup?.stop(); // the workers go whatever failed before: none outlives an agent that stops
    }
    mgmt.server.close();
    await events.flush(); // records waiting to share a message go before the drain (eventlog.ts Share)
    await nc.drain().catch((e: unknown) => log.warn({ err: e }, 'NATS connection did not drain'));
    resolveDone(code);
  }
  serving = true;
  if (pending) void shutdown(pending);
  return done;
}

/** Retry a JetStream set-up step for up to a minute (a cluster forming, a leader being elected). */
const untilReady = <T>(what: string, f: () => Promise<T>): Promise<T> =>
  retrying(`set up ${what}`, f, { deadlineMs: 60_000, maxDelayMs: 4000 });
