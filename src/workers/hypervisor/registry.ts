/**
 * The registry of running VMs: a file (the hypervisor worker keeps it as `hypervisor-vms.json` next to its
 * journal) listing each VM's sandbox, pid, QEMU start time and files. A driver rewrites it whenever its
 * set of VMs changes; its successor (after a worker restart) reads it to find the VMs that died while no
 * driver watched them: their QEMU is gone, so `scanHost` cannot find them, but they must be reported.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { VmPaths } from './qemu-args.ts';

/** One line of the registry: enough to tell a VM's QEMU is gone and to remove its files. */
export interface RegistryEntry {
  sandboxId: string;
  /** QEMU's `-name` id when it is not `sandboxId`: a pool VM that sandbox claimed. */
  name?: string;
  pid: number;
  /** The QEMU process's start time (clock ticks since boot): with the pid, its identity. */
  ticks: string;
  paths: VmPaths;
}

export class VmRegistry {
  /** Without a path, nothing is kept (and nothing found). */
  constructor(private path?: string) {}

  /** Replace the file's contents with `entries` (atomically: write, then rename). */
  save(entries: RegistryEntry[]): void {
    const path = this.path;
    if (!path) return;
    try {
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(`${path}.tmp`, JSON.stringify(entries) + '\n', { mode: 0o600 });
      renameSync(`${path}.tmp`, path);
    } catch {
      /* best effort: without it, a VM that dies while no driver runs goes unreported */
    }
  }

  /** The entries the file lists; malformed ones are skipped, a missing or unreadable file lists none. */
  load(): RegistryEntry[] {
    if (!this.path) return [];
    let v: unknown;
    try {
      v = JSON.parse(readFileSync(this.path, 'utf8'));
    } catch {
      return [];
    }
    return Array.isArray(v) ? v.filter(isEntry) : [];
  }
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

function isEntry(e: unknown): e is RegistryEntry {
  if (!isRecord(e) || !isRecord(e.paths)) return false;
  const p = e.paths;
  return (
    typeof e.sandboxId === 'string' &&
    (e.name === undefined || typeof e.name === 'string') &&
    Number.isInteger(e.pid) &&
    typeof e.ticks === 'string' &&
    typeof p.qmp === 'string' &&
    typeof p.agent === 'string' &&
    typeof p.console === 'string' &&
    typeof p.stderr === 'string'
  );
}
