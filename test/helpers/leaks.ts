/**
 * What a test leaves behind on the host: mounts under a path, processes whose command line matches
 * (virtiofsd daemons among them), temporary VMM users, directories. Tests assert these are empty after every scenario.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';

/** Mount points at or below `root` (from /proc/self/mountinfo, octal escapes decoded). */
export function mountsUnder(root: string): string[] {
  const text = readFileSync('/proc/self/mountinfo', 'utf8');
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const mp = f[4]?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (mp && (mp === root || mp.startsWith(root.endsWith('/') ? root : root + '/'))) out.push(mp);
  }
  return out;
}

/**
 * After a leak was recorded for the report: the mounts under `root` undone (lazily, deepest first) so the dir
 * can be removed and nothing outlives the test that failed. Returns what it unmounted.
 */
export function unmountUnder(root: string): string[] {
  const left = mountsUnder(root).sort((a, b) => b.length - a.length);
  for (const m of left) execFileSync('umount', ['-l', m]);
  return left;
}

/** PIDs of live processes whose command line contains `needle`. */
export function processesMatching(needle: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ');
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      if (/\) Z /.test(stat)) continue; // zombies hold nothing
      if (cmd.includes(needle)) out.push(Number(p));
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

/** PIDs of live virtiofsd processes whose command line names a path under `root` (a share or socket of a node's). */
export function virtiofsdUnder(root: string): number[] {
  return processesMatching(root).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]?.endsWith('/virtiofsd') ?? false;
    } catch {
      return false;
    }
  });
}

/** Users whose name starts with `prefix` (default: Corral's temporary VMM users). */
export function usersWithPrefix(prefix = 'corral-'): string[] {
  const text = execFileSync('getent', ['passwd'], { encoding: 'utf8' });
  return text
    .split('\n')
    .map((l) => l.split(':')[0] ?? '')
    .filter((n) => n.startsWith(prefix));
}

/**
 * The VMM users a node made (their GECOS names the node: vmm-user.ts), so that test files running side by
 * side (one of them planting users of other nodes on purpose) do not see each other's.
 */
export function usersOfNode(node: string, prefix = 'corral-'): string[] {
  const text = execFileSync('getent', ['passwd'], { encoding: 'utf8' });
  return text
    .split('\n')
    .map((l) => l.split(':'))
    .filter(([name, , , , gecos]) => name?.startsWith(prefix) && gecos?.endsWith(` on ${node}`))
    .map(([name]) => name ?? '');
}

/** Directories under /run/user (a leaked VMM runtime dir shows here). */
export function runUserDirs(): string[] {
  return existsSync('/run/user') ? readdirSync('/run/user') : [];
}

export interface LeakReport {
  mounts: string[];
  processes: number[];
  users: string[];
}
export function leaks(opts: { root: string; processNeedle: string; userPrefix?: string }): LeakReport {
  return {
    mounts: mountsUnder(opts.root),
    processes: processesMatching(opts.processNeedle),
    users: usersWithPrefix(opts.userPrefix),
  };
}
