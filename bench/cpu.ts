/**
 * CPU time of a process tree, from /proc (utime + stime of every live descendant, plus what each has
 * reaped of its children: a forked mount(8) counts to its parent once waited for). On a shared machine the
 * CPU a piece of work costs varies far less than how long it takes, so throughput.ts reports both.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';

const TICK_MS = 10; // USER_HZ is 100 on Linux

interface Proc {
  ppid: number;
  ms: number;
}

function procs(): Map<number, Proc> {
  const out = new Map<number, Proc>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${d}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    out.set(Number(d), { ppid: Number(f[1]), ms: ticks * TICK_MS });
  }
  return out;
}

/** Per process of the tree under `root` (itself included): its CPU ms so far. */
export function treeCpu(root = process.pid): Map<number, number> {
  const all = procs();
  const kids = new Map<number, number[]>();
  for (const [pid, p] of all) kids.set(p.ppid, [...(kids.get(p.ppid) ?? []), pid]);
  const out = new Map<number, number>();
  const walk = (pid: number) => {
    const p = all.get(pid);
    if (!p) return;
    out.set(pid, p.ms);
    for (const k of kids.get(pid) ?? []) walk(k);
  };
  walk(root);
  return out;
}

/** CPU ms the tree spent between two readings (processes that ended meanwhile are not counted). */
export function cpuSince(before: Map<number, number>, after = treeCpu()): number {
  let ms = 0;
  for (const [pid, t] of after) ms += t - (before.get(pid) ?? 0);
  return ms;
}

/**
 * What a process of a node is, from its command line: `agent`, `worker.<kind>`, `natsServer`, `client` (the
 * root, this process), or `other` (a child it forked, reaped or not).
 */
function roleOf(pid: number, root: number): string {
  if (pid === root) return 'client';
  let argv: string[];
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return 'other';
  }
  if (basename(argv[0] ?? '') === 'nats-server') return 'natsServer';
  const i = argv.findIndex((a) => a.endsWith('corral.mjs'));
  if (i < 0) return 'other';
  return argv[i + 1] === 'worker' ? `worker.${argv[i + 2] ?? '?'}` : (argv[i + 1] ?? 'other');
}

/** `cpuSince`, per role of process (see roleOf): where a node's CPU went between two readings. */
export function cpuByRole(before: Map<number, number>, after = treeCpu(), root = process.pid): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [pid, t] of after) {
    const role = roleOf(pid, root);
    out[role] = (out[role] ?? 0) + t - (before.get(pid) ?? 0);
  }
  return out;
}
