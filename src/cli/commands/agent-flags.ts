/** The agent's fleet flags: `--label k=v` and `--capacity vcpus=N,memory=MiB,sandboxes=N`. */
import { err } from '../../errors.ts';

/** `--label k=v` (repeatable) or CORRAL_LABELS=k=v,k2=v2. */
export function parseLabels(items: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const it of items) {
    const i = it.indexOf('=');
    if (i <= 0) throw err.invalid(`label ${JSON.stringify(it)}: expected key=value`);
    out[it.slice(0, i)] = it.slice(i + 1);
  }
  return out;
}

/** `--capacity vcpus=4,memory=8192,sandboxes=20` (MiB); omitted parts come from the host. */
export function parseCapacity(
  v: string | undefined,
): { vcpus?: number; memoryMiB?: number; sandboxes?: number } | undefined {
  if (!v) return undefined;
  const out: Record<string, number> = {};
  for (const part of v.split(',')) {
    const [k, n] = part.split('=');
    const key = k === 'memory' ? 'memoryMiB' : k;
    if (!key || !['vcpus', 'memoryMiB', 'sandboxes'].includes(key) || !/^\d+$/.test(n ?? ''))
      throw err.invalid(`--capacity ${JSON.stringify(v)}: expected vcpus=N,memory=MiB,sandboxes=N`);
    out[key] = Number(n);
  }
  return out;
}
