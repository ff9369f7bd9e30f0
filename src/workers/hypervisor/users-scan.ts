/** Temporary VMM users present on the host (for scans and reconciliation). */
import { run } from '../exec.ts';

export async function getentUsers(prefix: string): Promise<string[]> {
  const r = await run('getent', ['passwd'], { timeoutMs: 5000, okCodes: 'any' });
  return r.stdout
    .split('\n')
    .map((l) => l.split(':')[0] ?? '')
    .filter((n) => n.startsWith(prefix));
}
