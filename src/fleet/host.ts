/** What a node offers by default: the host's CPUs and memory, and Corral's version. */
import { readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { MIN_MEMORY_MIB } from '../kata/config-types.ts';
import { inCheckout } from '../util/checkout.ts';
import type { Resources } from './types.ts';

/**
 * Capacity from the host unless configured: `os.cpus().length` vCPUs, `os.totalmem()` in MiB, and as
 * many sandboxes as Kata's smallest VM (256 MiB, `MIN_MEMORY_MIB`) fits in that memory.
 */
export function hostCapacity(configured: Partial<Resources> = {}): Resources {
  const memoryMiB = configured.memoryMiB ?? Math.floor(totalmem() / 1024 / 1024);
  return {
    vcpus: configured.vcpus ?? Math.max(1, cpus().length),
    memoryMiB,
    sandboxes: configured.sandboxes ?? Math.max(1, Math.floor(memoryMiB / MIN_MEMORY_MIB)),
  };
}

let version: string | undefined;
/** package.json's version (read once). */
export function corralVersion(): string {
  if (version === undefined) {
    try {
      const v = (JSON.parse(readFileSync(inCheckout('package.json'), 'utf8')) as { version?: unknown }).version;
      version = typeof v === 'string' ? v : 'unknown';
    } catch {
      version = 'unknown';
    }
  }
  return version;
}
