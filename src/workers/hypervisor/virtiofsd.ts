/**
 * One sandbox's virtiofsd: the virtio-fs server of its share, started (as root, also for a rootless VMM)
 * before QEMU connects to its socket, owned by the VM (vm.ts stops it after QEMU), adopted with the VM
 * after a worker restart, and found on the host by its sandbox tag (host-scan.ts `scanDaemons`).
 *
 * - `startDaemon` is idempotent: a daemon left for the same sandbox (a boot re-issued after a worker died)
 *   is ended first. It resolves once the socket listens (read from /proc/net/unix: a probe connection would
 *   use up the C daemon's only one), handed to the VMM user when there is one; a daemon that exits first,
 *   the deadline or an abort end it and reject.
 * - `reapDaemons` ends this owner's daemons that no VM claims (a worker killed between starting a daemon
 *   and its QEMU; a VM that died while no worker watched).
 */
import { spawn } from 'node:child_process';
import { chownSync, closeSync, openSync, readFileSync, rmSync } from 'node:fs';
import { err } from '../../errors.ts';
import type { BootSpec, VirtioFsSpec } from '../../domain/ops.ts';
import { abortError, tailOf } from './boot-error.ts';
import { kill, killOrphans, ownedBy, OWNER_ENV, SANDBOX_ENV, scanDaemons, watchPid } from './host-scan.ts';
import { pidAlive, procStart } from '../procfs.ts';
import { daemonPath, probeFlavour, virtiofsdArgs } from './virtiofsd-args.ts';

/** A running virtiofsd, ours (a child) or adopted (found by its tag). */
export interface Daemon {
  pid: number;
  /** Its start time (clock ticks since boot): with the pid, its identity. */
  ticks?: string;
  /** Resolves once it has exited. */
  exited: Promise<void>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it is gone (rejects if it survives SIGKILL). */
  stop(graceMs: number): Promise<void>;
}

/** Pids of the daemons this process started: `reapDaemons` never takes them for strays. */
const started = new Set<number>();

function handle(pid: number, exited: Promise<void>, ticks?: string): Daemon {
  let gone = false;
  void exited.then(() => {
    gone = true;
    started.delete(pid);
  });
  const within = (ms: number) =>
    new Promise<boolean>((res) => {
      const t = setTimeout(() => res(gone), ms);
      void exited.then(() => {
        clearTimeout(t);
        res(true);
      });
    });
  return {
    pid,
    ticks,
    exited,
    async stop(graceMs) {
      if (gone) return;
      kill(pid, 'SIGTERM');
      if (await within(Math.max(100, graceMs))) return;
      kill(pid, 'SIGKILL');
      if (!(await within(5000))) throw err.internal(`virtiofsd pid ${pid} survived SIGKILL`);
    },
  };
}

/** The daemon serving socket `socket` (an adopted VM's), if one runs. */
export function findDaemon(sandboxId: string, socket: string): Daemon | undefined {
  const d = scanDaemons().find((x) => x.sandboxId === sandboxId && x.socket === socket);
  const start = d && procStart(d.pid);
  if (!d || !start) return undefined;
  const w = watchPid(d.pid, start.ticks);
  return handle(d.pid, w.gone, start.ticks);
}

/** End the daemons of `owner` (tagged) that `claimed` does not keep; true if there were any. */
export function reapDaemons(owner: string, claimed: (pid: number) => boolean, deadlineMs: number): Promise<boolean> {
  const strays = scanDaemons().filter((d) => d.owner === owner && !claimed(d.pid) && !started.has(d.pid));
  return killOrphans(strays, deadlineMs);
}

/** End the daemons of a sandbox that a driver tagged `owner` may treat as its own (none started by it). */
export function killSandboxDaemons(sandboxId: string, owner: string | undefined, deadlineMs: number): Promise<boolean> {
  const found = scanDaemons().filter((d) => d.sandboxId === sandboxId && ownedBy(owner)(d) && !started.has(d.pid));
  return killOrphans(found, deadlineMs);
}

/** Whether a unix socket at `path` is listening (flag __SO_ACCEPTCON in /proc/net/unix). */
export function listening(path: string, table = readFileSync('/proc/net/unix', 'utf8')): boolean {
  return table.split('\n').some((l) => l.endsWith(` ${path}`) && l.trim().split(/\s+/)[3] === '00010000');
}

export interface StartDaemon {
  spec: BootSpec;
  v: VirtioFsSpec;
  socket: string;
  log: string;
  owner?: string;
  /** Epoch ms: listening by then, or it is ended and the start fails with Timeout. */
  deadlineMs: number;
  signal: AbortSignal;
}

/** Start the sandbox's virtiofsd and resolve once its socket listens (see the top of this file). */
export async function startDaemon(o: StartDaemon): Promise<Daemon> {
  const { spec, socket } = o;
  const path = daemonPath(o.v);
  const args = virtiofsdArgs(probeFlavour(path), { socket, sharedDir: spec.sharedDir, v: o.v });
  await killSandboxDaemons(spec.sandboxId, o.owner, o.deadlineMs);
  rmSync(socket, { force: true });
  const logFd = openSync(o.log, 'w', 0o600);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    [SANDBOX_ENV]: spec.sandboxId,
    ...(o.owner ? { [OWNER_ENV]: o.owner } : {}),
  };
  // Own session, as QEMU: a worker restart does not end it (the next worker adopts it with the VM).
  const child = spawn(path, args, { stdio: ['ignore', 'ignore', logFd], detached: true, env });
  closeSync(logFd);
  const exited = new Promise<void>((res) => {
    child.once('exit', () => res());
    child.once('error', () => res());
  });
  child.unref();
  const pid = child.pid ?? -1;
  if (pid > 0) started.add(pid);
  const d = handle(pid, exited, pid > 0 ? procStart(pid)?.ticks : undefined);
  const why = (m: string) => `sandbox ${spec.sandboxId}: virtiofsd ${m}\n--- virtiofsd log ---\n${tailOf(o.log)}`;
  try {
    let dead = false;
    while (!listening(socket)) {
      if (o.signal.aborted) throw abortError(o.signal, spec.sandboxId, ' (starting virtiofsd)');
      if (dead || pid < 0 || !pidAlive(pid)) throw err.internal(why(`${path} exited before its socket listened`));
      if (Date.now() > o.deadlineMs) throw err.timeout(why(`socket ${socket} did not listen in time`));
      // A poll of /proc/net/unix every 20 ms, cut short when the daemon exits.
      dead = await Promise.race([exited.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 20))]);
    }
    if (spec.user) chownSync(socket, spec.user.uid, spec.user.gid); // QEMU runs as the VMM user
    return d;
  } catch (e) {
    await d.stop(0).catch(() => {
      // It fails only if virtiofsd survived SIGKILL; the start's own error is the one to report.
    });
    for (const f of [socket, o.log]) rmSync(f, { force: true }); // the error carries the log's tail
    throw e;
  }
}
