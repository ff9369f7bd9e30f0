/**
 * Pool VMs count against the node's capacity in the fleet registry (docs/decisions/0016-vm-pool.md): each
 * VM the hypervisor worker's pool holds (booting or idle) is a reservation of this agent's, id the VM's
 * (`_pool-…`), ref `pool:<node>`, with its class's vCPUs and memory. A VM a sandbox claimed leaves the
 * pool, so its reservation is released (the sandbox has its own). Synced from the worker's `pool` list
 * every few seconds; the registration's heartbeats write what is held.
 */
import type { AgentRegistration } from '../fleet/index.ts';
import type { Logger } from '../log.ts';
import type { WorkerClient } from './worker-client.ts';

export interface PoolCapacity {
  /** One sync now: hold the pool's VMs, release those gone. Resolves with the ids held. */
  sync(): Promise<string[]>;
  /** One sync now (a failure is logged), then one every `everyMs`. */
  start(everyMs?: number): Promise<void>;
  stop(): void;
}

export function poolCapacity(
  workers: Pick<WorkerClient, 'read'>,
  registration: Pick<AgentRegistration, 'hold' | 'release'>,
  node: string,
  log?: Pick<Logger, 'warn'>,
): PoolCapacity {
  const d = { workers, registration };
  const held = new Set<string>();
  const ref = `pool:${node}`;
  const onError = (e: unknown) => log?.warn({ err: e }, 'pool reservations not synced');
  let timer: NodeJS.Timeout | undefined;
  const sync = async () => {
    const p = await d.workers.read('hypervisor', 'pool', {});
    const now = new Set<string>();
    for (const v of p.vms) {
      const c = p.classes.find((x) => x.classKey === v.classKey)?.vmClass;
      if (!c) continue;
      now.add(v.vmId);
      if (!held.has(v.vmId)) d.registration.hold(v.vmId, { vcpus: c.vcpus, memoryMiB: c.memoryMiB, ref });
      held.add(v.vmId);
    }
    for (const id of [...held].filter((x) => !now.has(x))) {
      held.delete(id);
      await d.registration.release({ id });
    }
    return [...held];
  };
  return {
    sync,
    async start(everyMs = 2000) {
      const tick = () => {
        sync()
          .catch(onError)
          .finally(() => {
            if (!timer) return;
            timer = setTimeout(tick, everyMs);
            timer.unref();
          });
      };
      await sync().catch(onError);
      timer = setTimeout(tick, everyMs);
      timer.unref();
    },
    stop() {
      clearTimeout(timer);
      timer = undefined;
    },
  };
}
