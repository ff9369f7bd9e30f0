/**
 * At agent start, the node's default runtime config (what a create without a config of its own uses,
 * found by Kata's precedence) may ask for a VM pool (`[factory] vm_cache_number`): the hypervisor worker is
 * told to keep that many idle VMs of the class a sandbox of that config boots (default vCPUs and memory,
 * no workload sizing), so that the first create already finds one. A config that cannot be read, or a boot
 * that no pool VM can stand in for (rootless), asks for nothing: creates report their own config errors.
 */
import { randomUUID } from 'node:crypto';
import { applyAnnotations, loadRuntimeConfig, resolveConfigPath } from '../kata/index.ts';
import type { Logger } from '../log.ts';
import { bootArgsOf, vmClassOf } from './create-pool.ts';
import type { Settings } from './settings.ts';
import type { WorkerClient } from './worker-client.ts';

export async function primePool(s: Settings, workers: Pick<WorkerClient, 'call'>, log?: Pick<Logger, 'info' | 'warn'>) {
  try {
    const resolved = await resolveConfigPath({
      annotations: {},
      configPath: undefined,
      env: s.confFileEnv,
      allowedConfigDirs: s.configRoots,
      defaultPaths: s.defaultConfigPaths,
    });
    const rc = await applyAnnotations(await loadRuntimeConfig(resolved.path, { requireVsock: false }), {});
    const keep = rc.factory.vmCacheNumber;
    if (keep <= 0 || rc.hypervisor.rootless || !rc.hypervisor.initrd) return;
    const vmClass = vmClassOf(bootArgsOf(s, rc, 'pool', rc.hypervisor.defaultVcpus, rc.hypervisor.defaultMemory));
    const o = { opId: `pool-keep:${randomUUID()}`, deadlineMs: 10_000, signal: new AbortController().signal };
    const r = await workers.call('hypervisor', 'keep', { vmClass, keep }, o);
    log?.info({ vmClass, keep: r.keep }, `VM pool: keeping ${r.keep} idle VM(s) of ${resolved.path}'s class`);
  } catch (e) {
    log?.warn({ err: e }, 'VM pool not started from the default runtime config');
  }
}
