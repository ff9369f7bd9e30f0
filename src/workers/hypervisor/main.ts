/**
 * The hypervisor worker: serves `corral.v1.node.<node>.worker.hypervisor.<op>` (a {@link Hypervisor}: QEMU
 * through QemuDriver, or simulated VMs; the rootless VMM user) through the shared harness, and publishes
 * what the guests report: process output on `io.<container>.<fd>`, process exits and VM deaths as worker
 * events. On start it adopts the VMs an earlier worker of this node left running (it was killed, the agent
 * restarted it): their processes, output and exits carry on; the exits that happened meanwhile are
 * published; a VM that cannot be adopted is stopped and published as a VM exit. It logs what it
 * adopted and what it stopped, and `scan` returns both.
 */
import { dirname, join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { EventLog } from '../../bus/eventlog.ts';
import type { Log } from '../../log.ts';
import { runWorker, type OpHandler } from '../harness.ts';
import type { Adoption, OpHandlers, ScannedVm, WorkerEvent } from '../../domain/ops.ts';
import type { Hypervisor } from './hypervisor.ts';
import { QemuDriver, type QemuDriverOptions } from './qemu.ts';
import { SimDriver } from './sim.ts';
import { getentUsers } from './users-scan.ts';
import { publishOutput } from './output.ts';
import { serveStdin } from './stdin-plane.ts';
import {
  parseBoot,
  parseExec,
  parseFreeze,
  parseProcess,
  parseRef,
  parseResize,
  parseSignal,
  parseStats,
  parseStop,
  parseUpdate,
} from './validate.ts';
import { vmmUserHandlers } from './vmm-user.ts';
import { bootSpan } from './boot-span.ts';
import { VmPool } from './pool.ts';
import { poolHandlers, scannedAs } from './pool-ops.ts';
import { isPoolId } from '../../domain/pool.ts';

export interface HypervisorWorkerOptions {
  nc: NatsConnection;
  node: string;
  runDir: string;
  journalPath: string;
  log?: Log;
  driver?: QemuDriverOptions;
  /** Simulated VMs (SimDriver): no QEMU, for scale tests and benchmarks. */
  simulate?: boolean;
  wrap?: (h: Record<string, OpHandler>) => Record<string, OpHandler>;
}

/**
 * The worker's handler table: each op's request validated (validate.ts), then run on `hv`. `adoption` is
 * what the worker re-attached to when it started (null until that has settled), for `scan`.
 */
export function hypervisorHandlers(
  hv: Hypervisor,
  o: { node: string; adoption: () => Adoption | null; dropped: () => Record<string, number>; pool?: VmPool },
): OpHandlers<'hypervisor'> {
  return {
    ...vmmUserHandlers({ node: o.node }),
    ...poolHandlers(o.pool),
    boot: async (req, ctx) => {
      const spec = parseBoot(req);
      return bootSpan(spec, () => hv.boot(spec, ctx.signal));
    },
    stop: async (req, ctx) => hv.stop(parseStop(req).sandboxId, ctx.deadlineMs),
    startProcess: async (req) => {
      await hv.startProcess(parseProcess(req));
      return { started: true };
    },
    signal: async (req) => {
      const s = parseSignal(req);
      await hv.settled(s.sandboxId);
      return hv.signal(s.sandboxId, s.containerId, s.signal, s.all, s.execId);
    },
    exec: async (req) => ({ started: true, guestPid: (await hv.exec(parseExec(req))).pid }),
    closeStdin: async (req) => hv.closeStdin(parseRef('closeStdin', req)),
    resize: async (req) => {
      const { rows, cols, ...ref } = parseResize(req);
      return hv.resize(ref, { rows, cols });
    },
    pause: async (req) => {
      const f = parseFreeze('pause', req);
      return hv.pause(f.sandboxId, f.containerId);
    },
    resume: async (req) => {
      const f = parseFreeze('resume', req);
      return hv.resume(f.sandboxId, f.containerId);
    },
    update: async (req) => {
      const u = parseUpdate(req);
      return hv.update(u.sandboxId, u.containerId, u.limits);
    },
    stats: async (req) => {
      const s = parseStats(req);
      return hv.stats(s.sandboxId, s.containerId);
    },
    scan: async () => ({
      vms: scannedAs(hv.scanHost(), hv.list()),
      users: await getentUsers('corral-'),
      managed: hv.list(),
      adoption: o.adoption(),
      outputDropped: o.dropped(),
    }),
  };
}

export async function startHypervisorWorker(o: HypervisorWorkerOptions) {
  // - The op's deadline (the harness's AbortSignal) bounds a boot; the driver's own bound sits past it.
  // - Tagged with the node: on a host shared by several nodes, each worker sees and touches its own VMs only.
  // - An exit is acknowledged to the guest only once NATS has it: until then the guest keeps it, and a
  //   worker restarted in between reports it again.
  // - The registry (next to the journal) lists the worker's VMs: its successor reports those that died meanwhile.
  const driver: Hypervisor = o.simulate
    ? new SimDriver({ registryPath: join(dirname(o.journalPath), 'hypervisor-sim-vms.json') })
    : new QemuDriver({
        bootTimeoutMs: 30 * 60_000,
        owner: o.node,
        confirmExit: async (e) => {
          await appended.get(e);
        },
        registryPath: join(dirname(o.journalPath), 'hypervisor-vms.json'),
        ...o.driver,
      });

  const output = publishOutput(o.nc, o.node, driver, o.log);
  const stdin = serveStdin(o.nc, o.node, driver);
  // Exits and VM deaths are facts: published into the event log's subjects, so an agent that was down
  // when they happened finds them there on recovery.
  // Appended with acknowledgement (and retried across a NATS outage): an exit is never lost in flight.
  const facts = new EventLog(o.nc, o.node);
  const appended = new Map<WorkerEvent, Promise<unknown>>();
  const fact = (ev: WorkerEvent) => {
    const p = facts.append(ev.sandboxId, 'worker', { event: ev });
    appended.set(ev, p);
    const notStored = (e: unknown) => o.log?.error({ err: e, event: ev }, 'worker fact not stored');
    p.catch(notStored).finally(() => appended.delete(ev));
  };
  driver.on('exit', fact);
  driver.on('oom', fact);
  // A pool VM is no sandbox's: its end is the pool's to handle (and record), not a fact for the agent.
  driver.on('vmExit', (e) => (isPoolId(e.sandboxId) ? pool?.lost(e.sandboxId) : fact(e)));
  const pool =
    driver instanceof QemuDriver
      ? new VmPool({
          driver,
          runDir: o.runDir,
          storePath: join(dirname(o.journalPath), 'hypervisor-pool.json'),
          // In the event log, and in the worker's journal (keys no opId can take: `pool:<vm>:<event>:<ms>`).
          record: (id, data) => {
            journal.put(`pool:${id}:${String(data.event)}:${Date.now()}`, { ok: true, result: data });
            facts
              .append(id, 'pool', data)
              .catch((e: unknown) => o.log?.warn({ err: e, data }, 'pool record not stored'));
          },
          warn: (m, e) => o.log?.warn({ err: e }, m),
        })
      : undefined;

  // Re-attach to this node's VMs (registered at once; ops on them wait until each is settled).
  const found: ScannedVm[] = driver.scanHost();
  let adoption: Adoption | null = null;
  const adopted = driver.adoptAll().then(async (r) => {
    adoption = r;
    logAdoption(o.log, r, found);
    const p = await pool?.restore().catch((e: unknown) => void o.log?.warn({ err: e }, 'VM pool not restored'));
    if (p?.restored.length || p?.stopped.length)
      o.log?.info(p, `VM pool: took back ${p.restored.length} idle VM(s), stopped ${p.stopped.length}`);
    return r;
  });

  const handlers: Record<string, OpHandler> = hypervisorHandlers(driver, {
    node: o.node,
    adoption: () => adoption,
    dropped: output.dropped,
    pool,
  });
  const { sub, journal } = runWorker({
    nc: o.nc,
    node: o.node,
    kind: 'hypervisor',
    handlers: o.wrap ? o.wrap(handlers) : handlers,
    journalPath: o.journalPath,
    readOps: ['scan', 'stats', 'pool'],
    onInternal: (e, op) => o.log?.error({ err: e, op }, 'hypervisor worker op failed unexpectedly'),
  });
  return {
    driver,
    pool,
    found,
    adopted,
    sub,
    journal,
    async stop(timeoutMs = 20_000) {
      sub.unsubscribe();
      for (const s of stdin.subs) s.unsubscribe();
      await pool?.drain(Date.now() + timeoutMs);
      await driver.stopAll(Date.now() + timeoutMs);
    },
  };
}

/** What the worker adopted, stopped and found dead when it started; each VM reported gone also as a warning. */
function logAdoption(log: HypervisorWorkerOptions['log'], r: Adoption, found: ScannedVm[]): void {
  const others = found.filter(
    (v) => !r.adopted.some((a) => a.pid === v.pid) && !r.stopped.some((s) => s.pid === v.pid),
  );
  const list = (vs: { sandboxId: string; pid: number; reason: string }[]) =>
    vs.map((s) => `${s.sandboxId} pid ${s.pid}: ${s.reason}`).join('; ');
  const adopted = r.adopted
    .map((a) => `${a.sandboxId} pid ${a.pid}: ${a.running.length} running, ${a.exited.length} exited meanwhile`)
    .join('; ');
  log?.info(
    { adopted: r.adopted, stopped: r.stopped, dead: r.dead, untagged: others },
    `hypervisor worker re-attached: adopted ${r.adopted.length} VM(s) [${adopted}], ` +
      `stopped ${r.stopped.length} [${list(r.stopped)}], found ${r.dead.length} dead [${list(r.dead)}]` +
      (others.length ? `, left ${others.length} untagged Corral QEMU(s) alone` : ''),
  );
  for (const s of [...r.stopped, ...r.dead]) {
    const m = `VM of sandbox ${s.sandboxId} (pid ${s.pid}) reported gone: ${s.reason}`;
    log?.warn({ sandboxId: s.sandboxId, pid: s.pid, reason: s.reason }, m);
  }
}
