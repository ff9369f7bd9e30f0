/**
 * Find Corral VMs on the host by their `-name corral-<id>` marker and their owner tag (and their
 * virtiofsd daemons by their sandbox tag), read what a process is from /proc, and end processes that are
 * not our children.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { err } from '../../errors.ts';
import { pidAlive, procStart } from '../procfs.ts';
import { NAME_PREFIX, parseQemuCmdline, vmPaths, type VmPaths } from './qemu-args.ts';

/**
 * A Corral QEMU on this host. `owner` is the `CORRAL_OWNER` tag in its environment: the node whose
 * hypervisor worker started it (absent for QEMUs started without one, e.g. by an older version).
 */
export interface HostVm {
  pid: number;
  sandboxId: string;
  owner?: string;
  /** QEMU's `-name` id when it is not `sandboxId` (a claimed pool VM, known from the registry). */
  name?: string;
}

/** Environment variable that carries a QEMU's (or virtiofsd's) owner tag (they ignore it). */
export const OWNER_ENV = 'CORRAL_OWNER';
/** Environment variable that names a virtiofsd's sandbox. */
export const SANDBOX_ENV = 'CORRAL_SANDBOX';
/** Environment variable that carries a QEMU's shared dir (its 9p `-fsdev` names it too; virtio-fs does not). */
export const SHARE_ENV = 'CORRAL_SHARE';

/** A Corral virtiofsd on this host: a `virtiofsd` whose environment names its sandbox. */
export interface HostDaemon extends HostVm {
  /** Its `--socket-path`. */
  socket?: string;
}

/** Live (non-zombie) processes whose argv holds `-name corral-<id>`, from /proc, with their owner tag. */
export function scanHost(): HostVm[] {
  const out: HostVm[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      const i = argv.indexOf('-name');
      const name = i >= 0 ? argv[i + 1] : undefined;
      if (!name?.startsWith(NAME_PREFIX) || !pidAlive(Number(p))) continue;
      const owner = ownerOf(Number(p));
      out.push({
        pid: Number(p),
        sandboxId: name.slice(NAME_PREFIX.length),
        ...(owner === undefined ? {} : { owner }),
      });
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

/** Live Corral virtiofsd processes, with their sandbox, owner tag and socket. */
export function scanDaemons(): HostDaemon[] {
  const out: HostDaemon[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      if (basename(argv[0] ?? '') !== 'virtiofsd' || !pidAlive(Number(p))) continue;
      const sandboxId = envOf(Number(p), SANDBOX_ENV);
      if (!sandboxId) continue;
      const owner = ownerOf(Number(p));
      const socket = argv.find((a) => a.startsWith('--socket-path='))?.slice('--socket-path='.length);
      out.push({
        pid: Number(p),
        sandboxId,
        ...(owner === undefined ? {} : { owner }),
        ...(socket ? { socket } : {}),
      });
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

/** The files a Corral QEMU's command line names (sockets, console), and its stderr log next to them. */
export function vmFilesOf(pid: number): VmPaths | undefined {
  let cmd;
  try {
    cmd = parseQemuCmdline(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0'));
  } catch {
    return undefined; // exited meanwhile
  }
  if (!cmd) return undefined;
  const { qmp, agent, console } = cmd;
  return { ...vmPaths(dirname(agent), cmd.sandboxId), qmp, agent, ...(console ? { console } : {}) };
}

/** The `CORRAL_OWNER` tag in a process's environment, if any. */
export const ownerOf = (pid: number): string | undefined => envOf(pid, OWNER_ENV);

/** A variable of a process's environment, if it has it. */
export function envOf(pid: number, name: string): string | undefined {
  try {
    const kv = readFileSync(`/proc/${pid}/environ`, 'utf8')
      .split('\0')
      .find((e) => e.startsWith(`${name}=`));
    return kv?.slice(name.length + 1);
  } catch {
    return undefined;
  }
}

/** VMs a driver tagged `owner` may treat as its own: its own, and untagged ones (never another node's). */
export const ownedBy =
  (owner: string | undefined) =>
  (v: HostVm): boolean =>
    owner === undefined || v.owner === undefined || v.owner === owner;

/**
 * Resolves once `pid` is gone (exited, a zombie, or its number reused by a process with another start
 * time): how the exit of a process that is not our child is noticed. `stop()` ends the watch.
 */
export function watchPid(pid: number, ticks: string, everyMs = 200): { gone: Promise<void>; stop: () => void } {
  let stop!: () => void; // set by the executor below, which runs at once
  const gone = new Promise<void>((resolve) => {
    const t = setInterval(() => {
      if (procStart(pid)?.ticks !== ticks) {
        clearInterval(t);
        resolve();
      }
    }, everyMs);
    t.unref();
    stop = () => clearInterval(t);
  });
  return { gone, stop };
}

export function kill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* gone already */
  }
}

/**
 * End processes that are not our children (SIGTERM, then SIGKILL near the deadline), polling /proc
 * until they are gone. True when there was anything to end.
 */
export async function killOrphans(found: HostVm[], deadlineMs: number): Promise<boolean> {
  const gone = async (ms: number) => {
    for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 50))) {
      if (!found.some((v) => pidAlive(v.pid))) return true;
    }
    return !found.some((v) => pidAlive(v.pid));
  };
  for (const v of found) kill(v.pid, 'SIGTERM');
  if (!(await gone(Math.min(3000, Math.max(200, deadlineMs - Date.now() - 1000))))) {
    for (const v of found) kill(v.pid, 'SIGKILL');
    if (!(await gone(5000)))
      throw err.internal(`orphaned process ${found.map((v) => v.pid).join(',')} survived SIGKILL`);
  }
  return found.length > 0;
}
