/**
 * Adoption after a worker restart: take over one QEMU that an earlier driver of the same owner (a worker
 * that died) left running. The VM is registered at once (state `adopting`: `stop` cancels the adoption,
 * `startProcess` and `settled` wait for it), then its QMP must answer `query-status` with `running` and its
 * guest agent must answer LIST with the containers it still knows. A virtio-fs VM's virtiofsd (found by its
 * socket) is adopted with it. A VM that cannot be adopted (sockets gone, its virtiofsd gone, QMP dead or not
 * running, the guest silent until the deadline) is stopped and reported as `vmExit`.
 */
import { randomInt } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { ensureError, err } from '../../errors.ts';
import type { AdoptedVm, LostVm } from '../../domain/ops.ts';
import { AgentChannel, encodeList, type AgentMsg, type GuestContainer, type ResyncInfo } from './agent-channel.ts';
import { keyOf } from './agent-frames.ts';
import { procStart } from '../procfs.ts';
import { killOrphans, watchPid, type HostVm } from './host-scan.ts';
import { Qmp } from './qmp.ts';
import { parseQemuCmdline, vmPaths } from './qemu-args.ts';
import type { VmExitEvent } from './hypervisor.ts';
import { findDaemon } from './virtiofsd.ts';
import { Vm, type VmHooks } from './vm.ts';

/** What an adoption needs from its driver. */
export interface AdoptEnv {
  hooks: VmHooks;
  /** The driver's VM of a sandbox, if it has one. */
  has(sandboxId: string): boolean;
  /** Make the VM known to the driver (it is still adopting). */
  register(vm: Vm): void;
  /** For the message of a guest that did not answer LIST in time. */
  adoptTimeoutMs: number;
}

const vmExitOf = (sandboxId: string): VmExitEvent => ({
  kind: 'vmExit',
  sandboxId,
  code: null,
  signal: null,
  at: Date.now(),
});

/** Adopt the QEMU `h`; resolves once it is ours (AdoptedVm) or was stopped (LostVm, its `vmExit` emitted). */
export function adopt(env: AdoptEnv, h: HostVm, deadlineMs: number): Promise<AdoptedVm | LostVm> {
  let argv: string[] = [];
  try {
    argv = readFileSync(`/proc/${h.pid}/cmdline`, 'utf8').split('\0');
  } catch {
    /* gone meanwhile */
  }
  const cmd = parseQemuCmdline(argv);
  const start = procStart(h.pid);
  if (!cmd || !start || env.has(h.sandboxId)) {
    // Nothing to talk to: end the process. A second QEMU of a sandbox that has one is no VM exit.
    const duplicate = env.has(h.sandboxId);
    const reason = duplicate
      ? `a second QEMU of sandbox ${h.sandboxId}`
      : !start
        ? 'it exited meanwhile'
        : 'unrecognised command line';
    return killOrphans([h], Date.now() + 5000)
      .catch(() => false)
      .then(() => {
        if (!duplicate) setImmediate(() => env.hooks.events.emit('vmExit', vmExitOf(h.sandboxId)));
        return { sandboxId: h.sandboxId, pid: h.pid, reason };
      });
  }
  const watch = watchPid(h.pid, start.ticks);
  const name = h.name ?? h.sandboxId;
  const daemon = cmd.vfs ? findDaemon(name, cmd.vfs) : undefined;
  const vm = new Vm(
    {
      sandboxId: h.sandboxId,
      ...(h.name ? { name: h.name } : {}),
      pid: h.pid,
      accel: cmd.accel,
      state: 'adopting',
      startedAt: start.at,
      paths: {
        ...vmPaths(dirname(cmd.agent), name),
        qmp: cmd.qmp,
        agent: cmd.agent,
        ...(cmd.console ? { console: cmd.console } : {}),
        ...(cmd.vfs ? { vfs: cmd.vfs } : {}),
      },
      unwatch: watch.stop,
      ticks: start.ticks,
      daemon,
    },
    env.hooks,
  );
  void watch.gone.then(() => vm.markExited({ code: null, signal: null }));
  let settle!: () => void; // set by the executor below, which runs at once
  vm.settled = new Promise<void>((r) => (settle = r));
  env.register(vm);
  return (async (): Promise<AdoptedVm | LostVm> => {
    try {
      for (const f of [vm.paths.qmp, vm.paths.agent])
        if (!existsSync(f)) throw err.unavailable(`its socket ${f} is gone`);
      if (cmd.vfs && !daemon) throw err.unavailable(`its virtiofsd (socket ${cmd.vfs}) is gone`);
      const alive = () => !vm.exitInfo;
      vm.qmp = await Qmp.connect(vm.paths.qmp, {
        deadlineMs: Math.min(deadlineMs, Date.now() + 5000),
        signal: vm.abort.signal,
        alive,
      });
      const st = await vm.qmp.queryStatus(2000);
      if (st.status !== 'running') throw err.unavailable(`QMP says the guest is ${st.status}`);
      const token = randomInt(1, 0xffffffff);
      vm.agent = await AgentChannel.connect(vm.paths.agent, { deadlineMs, signal: vm.abort.signal, alive }, token);
      let resync: ResyncInfo = { discarded: 0, frames: 0 };
      vm.agent.once('resync', (r) => {
        resync = r;
      });
      vm.agent.send(encodeList(token));
      // A stop may have cancelled the adoption during an await that does not listen for it (queryStatus):
      // give up here, or the VM would end up running while `stop` waits for it to be gone.
      vm.abort.signal.throwIfAborted();
      const found = await takeOver(vm, vm.agent, token, deadlineMs, env.adoptTimeoutMs);
      vm.abort.signal.throwIfAborted();
      vm.adoptedAt = Date.now();
      return {
        sandboxId: h.sandboxId,
        pid: h.pid,
        accel: cmd.accel,
        resync,
        running: found.filter((c) => !c.exited).map(keyOf),
        exited: found
          .filter((c) => c.exited)
          .map(({ containerId, execId, status }) => ({ containerId, execId, status })),
      };
    } catch (e) {
      const reason =
        vm.abort.signal.aborted && vm.stopRequested ? 'stopped while being adopted' : ensureError(e).message;
      await vm.destroy(500).catch(() => {
        // It fails only if QEMU survived SIGKILL; the VM is reported lost either way (main.ts logs `reason`).
      });
      if (!vm.stopRequested) setImmediate(() => env.hooks.events.emit('vmExit', vmExitOf(h.sandboxId)));
      return { sandboxId: h.sandboxId, pid: h.pid, reason };
    } finally {
      settle();
    }
  })();
}

/**
 * Wait for the guest's STATE answering LIST(token), holding back what the guest said before it; then make
 * the VM ours (`Vm.takeOver`): its containers become running processes, what was held back is handled in
 * order, and the exits the guest kept (not yet ACKed) that were not among it are emitted.
 */
function takeOver(
  vm: Vm,
  agent: AgentChannel,
  token: number,
  deadlineMs: number,
  adoptTimeoutMs: number,
): Promise<GuestContainer[]> {
  return new Promise((resolve, reject) => {
    const held: AgentMsg[] = [];
    let over = false;
    const finish = (f: () => void) => {
      if (over) return;
      over = true;
      clearTimeout(timer);
      vm.abort.signal.removeEventListener('abort', onAbort);
      agent.off('msg', onMsg);
      agent.off('close', onClose);
      f();
    };
    // The reason is the CorralError given to `vm.cancel` (the only abort), which ensureError returns as it is.
    const onAbort = () => finish(() => reject(ensureError(vm.abort.signal.reason)));
    const onClose = () => finish(() => reject(err.unavailable('the guest agent channel closed before STATE')));
    const onMsg = (m: AgentMsg) => {
      if (m.type !== 'state' || m.token !== token) {
        held.push(m);
        return;
      }
      finish(() => {
        vm.takeOver(m.containers, held);
        resolve(m.containers);
      });
    };
    const timer = setTimeout(
      () => finish(() => reject(err.timeout(`the guest agent did not answer LIST within ${adoptTimeoutMs} ms`))),
      Math.max(0, deadlineMs - Date.now()),
    );
    agent.on('msg', onMsg);
    agent.on('close', onClose);
    vm.abort.signal.addEventListener('abort', onAbort, { once: true });
    void vm.exited.then(() => finish(() => reject(err.unavailable('QEMU exited'))));
    void vm.daemon?.exited.then(() => finish(() => reject(err.unavailable('its virtiofsd exited'))));
    if (agent.isClosed) onClose();
  });
}
