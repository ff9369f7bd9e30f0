/**
 * The hypervisor worker: serves `corral.v1.node.<node>.worker.hypervisor.<op>` (QEMU through
 * QemuDriver, the rootless VMM user) through the shared harness, and publishes what the guests report:
 * process output on `io.<container>.<fd>`, process exits and VM deaths as worker events.
 * On start it adopts the VMs an earlier worker of this node left running (it was killed, the agent
 * restarted it): their processes, output and exits carry on; the exits that happened meanwhile are
 * published; a VM that cannot be adopted is stopped and published as a VM exit. It logs what it
 * adopted and what it stopped, and `scan` returns both.
 */
import { dirname, join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { err } from '../../errors.ts';
import { EventLog } from '../../bus/eventlog.ts';
import { subjects } from '../../bus/subjects.ts';
import type { Log } from '../../log.ts';
import { runWorker, type OpHandler } from '../harness.ts';
import type { BootSpec, ProcessSpec, WorkerEvent } from '../../domain/ops.ts';
import { QemuDriver, type Adoption, type QemuDriverOptions } from './qemu.ts';
import { SimDriver } from './sim.ts';
import { removeVmmUser, vmmUserHandlers, vmmUsersOfSandbox } from './vmm-user.ts';
import { getentUsers } from './users-scan.ts';

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

const str = (req: Record<string, unknown>, k: string): string => {
  const v = req[k];
  if (typeof v !== 'string' || !v) throw err.invalid(`${k} must be a non-empty string`);
  return v;
};

export async function startHypervisorWorker(o: HypervisorWorkerOptions) {
  // - The op's deadline (the harness's AbortSignal) bounds a boot; the driver's own bound sits past it.
  // - Tagged with the node: on a host shared by several nodes, each worker sees and touches its own VMs only.
  // - An exit is acknowledged to the guest only once NATS has it: until then the guest keeps it, and a
  //   worker restarted in between reports it again.
  // - The registry (next to the journal) lists the worker's VMs: its successor reports those that died meanwhile.
  const driver = o.simulate
    ? (new SimDriver() as unknown as QemuDriver)
    : new QemuDriver({
        bootTimeoutMs: 30 * 60_000,
        owner: o.node,
        confirmExit: async (e) => {
          await appended.get(e);
        },
        registryPath: join(dirname(o.journalPath), 'hypervisor-vms.json'),
        ...o.driver,
      });

  driver.on('output', (_sid, cid, fd, data) =>
    o.nc.publish(subjects.io(o.node, cid, fd === 1 ? 'stdout' : 'stderr'), data),
  );
  // Exits and VM deaths are facts: published into the event log's subjects, so an agent that was down
  // when they happened finds them there on recovery.
  // Appended with acknowledgement (and retried across a NATS outage): an exit is never lost in flight.
  const facts = new EventLog(o.nc, o.node);
  const appended = new Map<WorkerEvent, Promise<unknown>>();
  const fact = (ev: WorkerEvent) => {
    const p = facts.append(ev.sandboxId, 'worker', { event: ev as never });
    appended.set(ev, p);
    p.catch((e) => o.log?.error({ err: e, event: ev }, 'worker fact not stored')).finally(() => appended.delete(ev));
  };
  driver.on('exit', fact);
  driver.on('vmExit', fact);

  // Re-attach to this node's VMs (registered at once; ops on them wait until each is settled).
  const found = driver.scanHost();
  let adoption: Adoption | null = null;
  const adopted = driver.adoptAll().then((r) => {
    adoption = r;
    const others = found.filter(
      (v) => !r.adopted.some((a) => a.pid === v.pid) && !r.stopped.some((s) => s.pid === v.pid),
    );
    const list = (vs: { sandboxId: string; pid: number; reason: string }[]) =>
      vs.map((s) => `${s.sandboxId} pid ${s.pid}: ${s.reason}`).join('; ');
    o.log?.info(
      { adopted: r.adopted, stopped: r.stopped, dead: r.dead, untagged: others },
      `hypervisor worker re-attached: adopted ${r.adopted.length} VM(s) [${r.adopted.map((a) => `${a.sandboxId} pid ${a.pid}: ${a.running.length} running, ${a.exited.length} exited meanwhile`).join('; ')}], ` +
        `stopped ${r.stopped.length} [${list(r.stopped)}], found ${r.dead.length} dead [${list(r.dead)}]` +
        (others.length ? `, left ${others.length} untagged Corral QEMU(s) alone` : ''),
    );
    for (const s of [...r.stopped, ...r.dead]) {
      const m = `VM of sandbox ${s.sandboxId} (pid ${s.pid}) reported gone: ${s.reason}`;
      if (o.log?.warn) o.log.warn({ sandboxId: s.sandboxId, pid: s.pid, reason: s.reason }, m);
      else o.log?.error({ sandboxId: s.sandboxId, pid: s.pid, reason: s.reason }, m);
    }
    return r;
  });

  const users = vmmUserHandlers({ node: o.node });
  const handlers: Record<string, OpHandler> = {
    ...users,
    // Without a user name (its creation was never confirmed): remove whatever user was made for the sandbox.
    removeUser: async (req, ctx) => {
      if (req.user !== undefined) return users.removeUser(req, ctx);
      let removed = false;
      for (const u of await vmmUsersOfSandbox(str(req, 'sandboxId'), o.node))
        removed = (await removeVmmUser(u.name, u.uid, { signal: ctx.signal })).removed || removed;
      return { removed };
    },
    boot: async (req, ctx) => driver.boot(req as unknown as BootSpec, ctx.signal),
    stop: async (req, ctx) => driver.stop(str(req, 'sandboxId'), ctx.deadlineMs),
    startProcess: async (req) => {
      const p = req as unknown as ProcessSpec;
      for (const k of ['args', 'env', 'additionalGids'] as const)
        if (!Array.isArray(p[k])) throw err.invalid(`${k} must be a list`);
      str(req, 'sandboxId');
      str(req, 'containerId');
      await driver.startProcess(p);
      return { started: true };
    },
    signal: async (req) => {
      const id = str(req, 'sandboxId');
      await driver.settled(id);
      return driver.signal(id, str(req, 'containerId'), Number(req.signal));
    },
    // vms: every Corral QEMU of this node (and untagged ones); managed: the VMs this worker runs, adopted
    // ones with `adoptedAt`; adoption: what it adopted and stopped when it started (null until settled).
    scan: async () => ({
      vms: driver.scanHost(),
      users: await getentUsers('corral-'),
      managed: driver.list(),
      adoption,
    }),
  };
  const { sub, journal } = runWorker({
    nc: o.nc,
    node: o.node,
    kind: 'hypervisor',
    handlers: o.wrap ? o.wrap(handlers) : handlers,
    journalPath: o.journalPath,
    readOps: ['scan'],
    onInternal: (e, op) => o.log?.error({ err: e, op }, 'hypervisor worker op failed unexpectedly'),
  });
  return {
    driver,
    found,
    adopted,
    sub,
    journal,
    async stop(timeoutMs = 20_000) {
      sub.unsubscribe();
      await driver.stopAll(Date.now() + timeoutMs);
    },
  };
}
