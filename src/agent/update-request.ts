/**
 * containerd's Update body (`resources`: LinuxResources, camelCase) → the cgroup v2 writes of the
 * container's cgroup in the guest. Interim: memory limit, CPU quota/period and pids limit.
 */
import { err } from '../errors.ts';
import type { CgroupWrite } from '../domain/ops.ts';

const num = (o: Record<string, unknown>, k: string, what: string): number | undefined => {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw err.invalid(`resources.${what}.${k} must be an integer`);
  return v;
};
const section = (r: Record<string, unknown>, k: string): Record<string, unknown> => {
  const v = r[k] ?? {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw err.invalid(`resources.${k} must be a map`);
  return v as Record<string, unknown>;
};

export function parseUpdate(resources: unknown): CgroupWrite[] {
  if (!resources || typeof resources !== 'object' || Array.isArray(resources))
    throw err.invalid('update needs resources (a LinuxResources map)');
  const r = resources as Record<string, unknown>;
  const out: CgroupWrite[] = [];
  const mem = num(section(r, 'memory'), 'limit', 'memory');
  if (mem !== undefined) out.push({ file: 'memory.max', value: mem > 0 ? String(mem) : 'max' });
  const cpu = section(r, 'cpu');
  const quota = num(cpu, 'quota', 'cpu');
  const period = num(cpu, 'period', 'cpu');
  if (period !== undefined && (period < 1000 || period > 1_000_000))
    throw err.invalid('resources.cpu.period must be in [1000, 1000000] microseconds');
  if (quota !== undefined || period !== undefined)
    out.push({ file: 'cpu.max', value: `${quota !== undefined && quota > 0 ? quota : 'max'} ${period ?? 100000}` });
  const pids = num(section(r, 'pids'), 'limit', 'pids');
  if (pids !== undefined) out.push({ file: 'pids.max', value: pids > 0 ? String(pids) : 'max' });
  if (!out.length)
    throw err.invalid('update: resources change nothing Corral applies (memory.limit, cpu.quota/period, pids.limit)');
  return out;
}
