/**
 * Launching one VM: start its virtiofsd first (virtio-fs only: virtiofsd.ts), spawn QEMU (as the VMM user
 * when the spec has one), connect to its guest agent channel and QMP, and wait until the guest agent says
 * READY. The VM is registered with the driver as soon as QEMU runs, so that `stop` and `release` can cancel
 * the launch. A failed launch kills QEMU (then its virtiofsd), waits until they are gone, removes their
 * sockets and logs, and throws.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chownSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { err } from '../../errors.ts';
import type { BootSpec } from '../../domain/ops.ts';
import { AgentChannel, encodePing, type AgentMsg } from './agent-channel.ts';
import { abortError, bootError, fmtExit } from './boot-error.ts';
import { procStart } from '../procfs.ts';
import { OWNER_ENV, SHARE_ENV } from './host-scan.ts';
import { Qmp } from './qmp.ts';
import { openMacvtaps } from './net-fds.ts';
import { inNetns, withTapFds } from './qemu-net.ts';
import { qemuArgs, setprivArgs, vmPaths, type VmPaths } from './qemu-args.ts';
import { startDaemon, type Daemon } from './virtiofsd.ts';
import { removeFiles, Vm, type VmHooks } from './vm.ts';
import { traceEvent } from '../../util/trace.ts';

/** What a launch needs from its driver. */
export interface LaunchEnv {
  qemuPath: string;
  setprivPath: string;
  /** Guest TSC in kHz for TCG guests (0: unknown). */
  tscKhz: number;
  /** Put into QEMU's environment as CORRAL_OWNER. */
  owner?: string;
  /** For the message of a boot that passed its deadline. */
  bootTimeoutMs: number;
  hooks: VmHooks;
  /** Make the new VM known to the driver (it is still booting). */
  register(vm: Vm): void;
}

export interface LaunchRequest {
  spec: BootSpec;
  accel: 'kvm' | 'tcg';
  signal: AbortSignal;
  /** Epoch ms by which the guest agent must be ready. */
  deadline: number;
  /** Appended to QEMU's command line. */
  extraArgs?: string[];
  /** A probe: past this (epoch ms), or when QMP reports a dead guest, give up and resolve null. */
  probeUntil?: number;
}

/** One QEMU launch; null when the guest stayed silent past `probeUntil` (already cleaned up). */
export async function launch(env: LaunchEnv, r: LaunchRequest): Promise<Vm | null> {
  const { spec, accel, signal, deadline } = r;
  if (signal.aborted) throw abortError(signal, spec.sandboxId, '');
  const paths = vmPaths(spec.runDir, spec.sandboxId);
  if (!existsSync(spec.runDir)) {
    mkdirSync(spec.runDir, { recursive: true, mode: 0o700 });
    if (spec.user) chownSync(spec.runDir, spec.user.uid, spec.user.gid);
  }
  removeFiles(paths);
  const args = qemuArgs(spec, { accel, paths, tscKhz: env.tscKhz || undefined, extra: r.extraArgs });
  const v = spec.virtioFs;
  const daemon = v
    ? await startDaemon({
        spec,
        v,
        socket: paths.vfs,
        log: paths.daemonLog,
        owner: env.owner,
        deadlineMs: deadline,
        signal,
      })
    : undefined;
  if (signal.aborted) {
    await endDaemon(daemon, paths);
    throw abortError(signal, spec.sandboxId, '');
  }
  const [vmm, vmmArgv]: [string, string[]] = spec.user
    ? [env.setprivPath, [...setprivArgs(spec.user), env.qemuPath, ...args]]
    : [env.qemuPath, args];
  // In the sandbox's network namespace, if it has one, with a rootless QEMU's taps opened for it there.
  const [cmd, argv] = inNetns(spec.network, ...withTapFds(spec.network, !!spec.user, vmm, vmmArgv));
  const errFd = openSync(paths.stderr, 'w', 0o600);
  const netFds: (number | null)[] = [];
  let child: ChildProcess;
  try {
    netFds.push(...openMacvtaps(spec.network));
    // Own session: a worker restart or a ^C in its terminal does not take the VMs down (scanHost finds them).
    // The share in the environment too: reconciliation tells this node's VMs by it (virtio-fs has no -fsdev).
    const childEnv: NodeJS.ProcessEnv = {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      [SHARE_ENV]: spec.sharedDir,
      ...(env.owner ? { [OWNER_ENV]: env.owner } : {}),
    };
    child = spawn(cmd, argv, {
      stdio: ['ignore', 'ignore', errFd, ...netFds.map((fd) => fd ?? 'ignore')],
      detached: true,
      env: childEnv,
    });
  } catch (e) {
    await endDaemon(daemon, paths);
    throw err.internal(`sandbox ${spec.sandboxId}: cannot spawn ${cmd}: ${(e as Error).message}`, e);
  } finally {
    closeSync(errFd);
    for (const fd of netFds) if (fd !== null) closeSync(fd);
  }
  const pid = child.pid ?? -1;
  const vm = new Vm(
    {
      sandboxId: spec.sandboxId,
      pid,
      accel,
      state: 'booting',
      startedAt: Date.now(),
      paths,
      child,
      ticks: child.pid ? procStart(child.pid)?.ticks : undefined,
      daemon,
    },
    env.hooks,
  );
  child.once('exit', (code, sig) => vm.markExited({ code, signal: sig }));
  child.once('error', (e) => {
    if (child.pid === undefined) vm.markExited({ code: null, signal: null }, e);
  });
  child.unref();
  env.register(vm);

  const both = AbortSignal.any([signal, vm.abort.signal]);
  const conn = { deadlineMs: deadline, signal: both, alive: () => !vm.exitInfo };
  try {
    vm.agent = await AgentChannel.connect(paths.agent, conn);
    vm.listen();
    vm.agent.send(encodePing(1));
    vm.qmp = await Qmp.connect(paths.qmp, conn);
    const outcome = await waitReady(vm, both, deadline, env.bootTimeoutMs, r.probeUntil);
    if (both.aborted) throw both.reason; // stop() or the caller gave up while READY was on its way
    if (outcome === 'silent') {
      await vm.destroy(0);
      return null;
    }
    traceEvent('guest.ready', { 'corral.vm.accel': accel }); // the guest agent's READY, on the boot's span
    vm.to('running');
    return vm;
  } catch (e) {
    await vm.destroy(500);
    throw bootError(e, vm, both);
  }
}

/** A virtiofsd whose QEMU never ran: end it, remove the VM's files. */
async function endDaemon(d: Daemon | undefined, paths: VmPaths): Promise<void> {
  await d?.stop(0).catch(() => {
    // It fails only if virtiofsd survived SIGKILL; the launch's own error is the one to report.
  });
  removeFiles(paths);
}

/**
 * Resolves 'ready' on the agent's READY, 'silent' past `probeUntil` or when QMP reports a dead guest;
 * rejects otherwise.
 */
function waitReady(
  vm: Vm,
  signal: AbortSignal,
  deadline: number,
  bootTimeoutMs: number,
  probeUntil?: number,
): Promise<'ready' | 'silent'> {
  return new Promise((resolve, reject) => {
    const timers: NodeJS.Timeout[] = [];
    const done = (f: () => void) => {
      timers.forEach(clearTimeout);
      clearInterval(poll);
      signal.removeEventListener('abort', onAbort);
      vm.agent?.off('msg', onMsg);
      f();
    };
    const onMsg = (m: AgentMsg) => {
      if (m.type === 'ready') done(() => resolve('ready'));
    };
    const onAbort = () => done(() => reject(abortError(signal, vm.sandboxId)));
    if (signal.aborted) return reject(abortError(signal, vm.sandboxId));
    if (vm.ready) return resolve('ready');
    vm.agent?.on('msg', onMsg);
    signal.addEventListener('abort', onAbort, { once: true });
    void vm.exited.then(() =>
      done(() => reject(err.internal(`QEMU exited (${fmtExit(vm.exitInfo)}) before the guest agent was ready`))),
    );
    void vm.daemon?.exited.then(() =>
      done(() => reject(err.internal('virtiofsd exited before the guest agent was ready'))),
    );
    timers.push(
      setTimeout(
        () => done(() => reject(err.timeout(`the guest agent was not ready within ${bootTimeoutMs} ms`))),
        Math.max(0, deadline - Date.now()),
      ),
    );
    if (probeUntil) timers.push(setTimeout(() => done(() => resolve('silent')), Math.max(0, probeUntil - Date.now())));
    const poll = setInterval(() => {
      if (!probeUntil || !vm.qmp) return;
      vm.qmp.queryStatus(500).then(
        (s) => {
          if (s.status === 'internal-error' || s.status === 'guest-panicked') done(() => resolve('silent'));
        },
        () => {
          // A probe that failed is retried at the next poll; a QEMU that died is noticed through `vm.exited`.
        },
      );
    }, 250);
  });
}
