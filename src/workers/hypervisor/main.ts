/**
 * The hypervisor worker: serves `corral.v1.node.<node>.worker.hypervisor.<op>` (QEMU through
 * QemuDriver, the rootless VMM user) through the shared harness, and publishes what the guests report:
 * process output on `io.<container>.<fd>`, process exits and VM deaths as worker events.
 * On start it reports the Corral QEMU processes it finds on the host (orphans of a crashed worker).
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { err } from '../../errors.ts';
import { encode } from '../../bus/codec.ts';
import { subjects } from '../../bus/subjects.ts';
import { runWorker, type OpHandler } from '../harness.ts';
import type { BootSpec, ProcessSpec, WorkerEvent } from '../protocol.ts';
import { QemuDriver, type QemuDriverOptions } from './qemu.ts';
import { removeVmmUser, vmmUserHandlers, vmmUsersOfSandbox } from './vmm-user.ts';
import { getentUsers } from './users-scan.ts';

export interface HypervisorWorkerOptions {
  nc: NatsConnection;
  node: string;
  runDir: string;
  journalPath: string;
  log?: { info(o: object, m?: string): void; error(o: object, m?: string): void };
  driver?: QemuDriverOptions;
  wrap?: (h: Record<string, OpHandler>) => Record<string, OpHandler>;
}

const str = (req: Record<string, unknown>, k: string): string => {
  const v = req[k];
  if (typeof v !== 'string' || !v) throw err.invalid(`${k} must be a non-empty string`);
  return v;
};

export async function startHypervisorWorker(o: HypervisorWorkerOptions) {
  // The op's deadline (the harness's AbortSignal) bounds a boot; the driver's own bound sits past it.
  // Tagged with the node: on a host shared by several nodes, each worker sees and touches its own VMs only.
  const driver = new QemuDriver({ bootTimeoutMs: 30 * 60_000, owner: o.node, ...o.driver });
  const found = driver.scanHost();
  o.log?.info({ vms: found }, `hypervisor worker found ${found.length} Corral QEMU process(es) on the host`);

  driver.on('output', (_sid, cid, fd, data) => o.nc.publish(subjects.io(o.node, cid, fd === 1 ? 'stdout' : 'stderr'), data));
  // Exits and VM deaths are facts: published into the event log's subjects, so an agent that was down
  // when they happened finds them there on recovery.
  const fact = (ev: WorkerEvent) => o.nc.publish(subjects.evt(o.node, ev.sandboxId, 'worker'), encode({ node: o.node, sandbox: ev.sandboxId, kind: 'worker', at: Date.now(), event: ev }));
  driver.on('exit', fact);
  driver.on('vmExit', fact);

  const users = vmmUserHandlers();
  const handlers: Record<string, OpHandler> = {
    ...users,
    // Without a user name (its creation was never confirmed): remove whatever user was made for the sandbox.
    removeUser: async (req, ctx) => {
      if (req.user !== undefined) return users.removeUser(req, ctx);
      let removed = false;
      for (const u of await vmmUsersOfSandbox(str(req, 'sandboxId'))) removed = (await removeVmmUser(u.name, u.uid, { signal: ctx.signal })).removed || removed;
      return { removed };
    },
    boot: async (req, ctx) => driver.boot(req as unknown as BootSpec, ctx.signal),
    stop: async (req, ctx) => driver.stop(str(req, 'sandboxId'), ctx.deadlineMs),
    startProcess: async (req) => {
      const p = req as unknown as ProcessSpec;
      for (const k of ['args', 'env', 'additionalGids'] as const) if (!Array.isArray(p[k])) throw err.invalid(`${k} must be a list`);
      str(req, 'sandboxId'); str(req, 'containerId');
      await driver.startProcess(p);
      return { started: true };
    },
    signal: async (req) => driver.signal(str(req, 'sandboxId'), str(req, 'containerId'), Number(req.signal)),
    scan: async () => ({ vms: driver.scanHost(), users: await getentUsers('corral-') }),
  };
  const { sub, journal } = runWorker({
    nc: o.nc, node: o.node, kind: 'hypervisor', handlers: o.wrap ? o.wrap(handlers) : handlers,
    journalPath: o.journalPath, readOps: ['scan'],
    onInternal: (e, op) => o.log?.error({ err: e, op }, 'hypervisor worker op failed unexpectedly'),
  });
  return {
    driver, found, sub, journal,
    async stop(timeoutMs = 20_000) {
      sub.unsubscribe();
      await driver.stopAll(Date.now() + timeoutMs);
    },
  };
}
