/**
 * The pool's file (`hypervisor-pool.json`, next to the worker's journal and VM registry): the classes the
 * pool keeps and the VMs it owns (booting or idle). A worker that starts after one was killed reads it to
 * tell its pool VMs (adopted like any VM) from strays, and to go on keeping the same classes.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { PoolVmView, VmClass } from '../../domain/pool.ts';

export interface PoolFile {
  classes: { vmClass: VmClass; keep: number }[];
  vms: PoolVmView[];
}

export class PoolStore {
  /** Without a path nothing is kept. */
  constructor(private path?: string) {}

  /** Written atomically (write, then rename); a write that fails costs only the successor's knowledge. */
  save(f: PoolFile): void {
    if (!this.path) return;
    try {
      mkdirSync(dirname(this.path), { recursive: true });
      writeFileSync(`${this.path}.tmp`, JSON.stringify(f) + '\n', { mode: 0o600 });
      renameSync(`${this.path}.tmp`, this.path);
    } catch {
      /* best effort, as the VM registry */
    }
  }

  /** What the file lists; missing, unreadable or malformed: an empty pool. */
  load(): PoolFile {
    const empty: PoolFile = { classes: [], vms: [] };
    if (!this.path) return empty;
    try {
      const v = JSON.parse(readFileSync(this.path, 'utf8')) as Partial<PoolFile>;
      return {
        classes: Array.isArray(v.classes) ? v.classes.filter((c) => typeof c?.keep === 'number' && !!c.vmClass) : [],
        vms: Array.isArray(v.vms)
          ? v.vms.filter((m) => typeof m?.vmId === 'string' && typeof m.classKey === 'string')
          : [],
      };
    } catch {
      return empty;
    }
  }
}
