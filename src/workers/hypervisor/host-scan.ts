/** Find Corral VMs on the host by their `-name corral-<id>` marker (orphans after a worker crash). */
import { readFileSync, readdirSync } from 'node:fs';
import { NAME_PREFIX } from './qemu-args.ts';

export interface HostVm { pid: number; sandboxId: string }

/** Live (non-zombie) processes whose argv holds `-name corral-<id>`, from /proc. */
export function scanHost(): HostVm[] {
  const out: HostVm[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      const i = argv.indexOf('-name');
      const name = i >= 0 ? argv[i + 1] : undefined;
      if (!name?.startsWith(NAME_PREFIX)) continue;
      if (/\) Z /.test(readFileSync(`/proc/${p}/stat`, 'utf8'))) continue;
      out.push({ pid: Number(p), sandboxId: name.slice(NAME_PREFIX.length) });
    } catch { /* exited meanwhile */ }
  }
  return out;
}

/** True while `pid` exists and is not a zombie. */
export function pidAlive(pid: number): boolean {
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}
