/**
 * `corral pool`: the node's VM pool (docs/decisions/0016-vm-pool.md), as its hypervisor worker keeps it:
 * per class the idle VMs it keeps, has and is booting, and the claims that took one or found none; then
 * each pool VM. `--json`: the worker's `pool` answer as it is.
 */
import { request } from '../../bus/rpc.ts';
import { subjects } from '../../bus/subjects.ts';
import type { PoolOps } from '../../domain/pool.ts';
import { duration, parse } from '../args.ts';
import type { Io } from '../io.ts';
import { age } from './fleet.ts';
import { show, withClient } from './task.ts';

export const POOL_USAGE = 'corral pool [--json]';

type Pool = PoolOps['pool']['res'];

export function renderPool(p: Pool, node: string, now: number): string {
  if (p.classes.length === 0) return `node ${node}: no VM pool (set [factory] vm_cache_number in the runtime config)`;
  const out = [`node ${node}: VM pool`];
  for (const c of p.classes) {
    const k = c.vmClass;
    const fs = k.virtioFs ? 'virtio-fs' : 'virtio-9p';
    out.push(
      `  class ${k.vcpus} vCPU ${k.memoryMiB} MiB ${k.machineType} ${fs} ${k.kernel}: ` +
        `keep ${c.keep}, idle ${c.idle}, booting ${c.booting}, claims ${c.hits} taken / ${c.misses} cold`,
    );
    for (const v of p.vms.filter((x) => x.classKey === c.classKey))
      out.push(
        `    ${v.vmId}  ${v.state}  pid ${v.pid ?? '-'}  age ${age(now - v.startedAt)}${v.adopted ? '  adopted' : ''}`,
      );
  }
  return out.join('\n');
}

export async function poolCommand(argv: string[], io: Io): Promise<number> {
  const p = parse(argv);
  if (p.positionals.length > 0) {
    io.err(`corral: InvalidArgument: pool takes no arguments; usage: ${POOL_USAGE}`);
    return 2;
  }
  const timeout = duration(p, 'timeout', 5000);
  return withClient(p, io, async (c) => {
    const r = await request<Pool>(c.nc, subjects.worker(c.node, 'hypervisor', 'pool'), {}, timeout);
    show(io, p, { node: c.node, ...r }, () => renderPool(r, c.node, Date.now()));
    return 0;
  });
}
