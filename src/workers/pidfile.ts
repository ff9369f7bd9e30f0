/**
 * One worker of a kind per node, held by a pidfile: `<run dir>/workers/<kind>.pid` holds `<pid> <start ticks>`
 * (field 22 of /proc/<pid>/stat, so a pid the kernel has since given to another process does not count).
 *
 * A worker claims it at start, by an exclusive create; a stale file (its process gone, or its pid reused) is
 * replaced, and a live one is refused: two workers of a kind would be two owners of the same mounts and VMs.
 * The agent reads it to find a worker that outlived it (agent.ts). That is the host's own answer: over NATS,
 * "no responders" proves nothing while the worker's connection moves to another server of a cluster.
 */
import { mkdirSync, openSync, readFileSync, unlinkSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { err } from '../errors.ts';
import type { WorkerKind } from '../domain/ops.ts';
import { procStart } from './procfs.ts';

export const workerPidfile = (runDir: string, kind: WorkerKind): string => join(runDir, 'workers', `${kind}.pid`);

/** The pid of the live worker the pidfile names, if it names one (never a dead, zombie or reused pid). */
export function liveWorker(runDir: string, kind: WorkerKind): number | undefined {
  let text: string;
  try {
    text = readFileSync(workerPidfile(runDir, kind), 'utf8');
  } catch {
    return undefined;
  }
  const [pid, ticks] = text.trim().split(' ');
  const n = Number(pid);
  return Number.isInteger(n) && n > 0 && procStart(n)?.ticks === ticks ? n : undefined;
}

/**
 * Claim the pidfile for this process. Returns its release (removes the file if it still names this process).
 * @throws AlreadyExists while another live worker of the kind holds it.
 */
export function claimWorkerPidfile(runDir: string, kind: WorkerKind, pid = process.pid): () => void {
  const path = workerPidfile(runDir, kind);
  mkdirSync(join(runDir, 'workers'), { recursive: true, mode: 0o755 });
  const mine = `${pid} ${procStart(pid)?.ticks ?? ''}\n`;
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o644);
      try {
        writeSync(fd, mine);
      } finally {
        closeSync(fd);
      }
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const holder = liveWorker(runDir, kind);
      if (holder !== undefined && holder !== pid)
        throw err.exists(`a ${kind} worker runs already for this run dir: pid ${holder} (${path})`);
      // Stale (or a file being written this instant): replace it once; a second EEXIST is a racing start.
      if (attempt > 0) throw err.exists(`another ${kind} worker is starting for this run dir (${path})`);
      try {
        unlinkSync(path);
      } catch (u) {
        if ((u as NodeJS.ErrnoException).code !== 'ENOENT') throw u;
      }
    }
  }
  return () => {
    try {
      if (readFileSync(path, 'utf8') === mine) unlinkSync(path);
    } catch {
      /* gone already */
    }
  };
}
