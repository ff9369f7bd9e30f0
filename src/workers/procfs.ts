/** What a process is, read from /proc: alive or not, and its start time (its identity together with its pid). */
import { readFileSync } from 'node:fs';

/** True while `pid` exists and is not a zombie. */
export function pidAlive(pid: number): boolean {
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** A process's start time: `ticks` since boot (stable identity with the pid), `at` in epoch ms. */
export function procStart(pid: number): { ticks: string; at: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
    const ticks = f[19]; // field 22: starttime, in clock ticks since boot
    if (!ticks || f[0] === 'Z') return undefined;
    const btime = Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1] ?? 0);
    return { ticks, at: btime * 1000 + Math.round(Number(ticks) * 10) }; // USER_HZ is 100 on Linux
  } catch {
    return undefined;
  }
}
